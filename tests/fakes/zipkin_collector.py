"""A fake Zipkin collector for tests: aiohttp.web in the test's own event loop, speaking the part of
Zipkin's API v2 that tracers use to report (`POST /api/v2/spans`).

As the real collector (zipkin-server's `ZipkinHttpCollector`): the body is a JSON list of spans
(`Content-Type: application/json`, gzip when `Content-Encoding: gzip`), answered `202 Accepted` with an
empty body; a body that is not a JSON list of objects is `400`. Other paths are `404`. Protobuf and
Thrift bodies (API v1) are not accepted: Envoy's `HTTP_JSON` reports never send them.

Spans are kept in arrival order in `spans`; `requests` counts the POSTs.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from aiohttp import web

SPANS_PATH = "/api/v2/spans"


class ZipkinCollector:
    """Start with `await ZipkinCollector().start()`; `port` is then set."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = 0
        self.spans: list[dict[str, Any]] = []
        self.requests = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> ZipkinCollector:
        app = web.Application()
        app.router.add_post(SPANS_PATH, self._spans)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _spans(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            body = gzip.decompress(body)
        try:
            spans = json.loads(body)
        except ValueError:
            return web.Response(status=400, text="malformed JSON")
        if not isinstance(spans, list) or not all(isinstance(s, dict) for s in spans):
            return web.Response(status=400, text="expected a JSON list of spans")
        self.spans.extend(spans)
        return web.Response(status=202)
