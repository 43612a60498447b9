"""The edge's two HTTP ports: probes (/metrics, /ready, /live) on --http-listen, for Prometheus and the
kubelet; debug pages (/debug/syncz, /debug/configz, /debug/scopez) on --debug-listen, loopback unless
configured otherwise (docs/design.md §9, §10). No page shows a private key.

A deliberately tiny HTTP/1.1 server on asyncio streams: GET and HEAD only, one request per connection
(`Connection: close`). It serves operators and Prometheus, not traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xdsbus.ledger.dump import to_json
from xdsbus.nats_options import ConnectionState
from xdsbus_edge.cache import SnapshotCache
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.registry import StreamTable
from xdsbus_edge.snapshot import short_type

log = logging.getLogger(__name__)

Response = tuple[int, str, bytes]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
_MAX_HEADER_BYTES = 16 * 1024


def _json(status: int, value: Any) -> Response:
    return (
        status,
        "application/json",
        (json.dumps(value, indent=2, sort_keys=True, default=str) + "\n").encode(),
    )


Route = Callable[[dict[str, list[str]]], Response]


class _Routes:
    """A path -> page table, with an index of its paths at `/`."""

    routes: dict[str, Route]

    def handle(self, path: str) -> Response:
        parts = urlsplit(path)
        route = self.routes.get(parts.path.rstrip("/") or "/")
        if route is None:
            return 404, "text/plain; charset=utf-8", b"not found\n"
        return route(parse_qs(parts.query))

    def index(self, _query: dict[str, list[str]]) -> Response:
        return 200, "text/plain; charset=utf-8", ("\n".join(sorted(self.routes)) + "\n").encode()


class ProbeApi(_Routes):
    """The pages of --http-listen: metrics and the probes, nothing about what is served. `/ready` fails
    before the first snapshot of every preloaded scope, and when NATS has been lost or a followed scope
    has served a version older than the ledger head for more than `max_lag` seconds (the edge then
    serves stale configuration: a load balancer should send proxies to another replica)."""

    def __init__(
        self,
        cache: SnapshotCache,
        metrics: EdgeMetrics,
        connection: ConnectionState | None = None,
        max_lag: float = 30.0,
    ) -> None:
        self.cache = cache
        self.metrics = metrics
        self.connection = connection
        self.max_lag = max_lag
        self.routes = {
            "/metrics": self.metrics_page,
            "/ready": self.ready,
            "/live": self.live,
            "/": self.index,
        }

    def live(self, _query: dict[str, list[str]]) -> Response:
        return 200, "text/plain; charset=utf-8", b"live\n"

    def metrics_page(self, _query: dict[str, list[str]]) -> Response:
        return 200, "text/plain; version=0.0.4; charset=utf-8", self.metrics.render().encode()

    def ready(self, _query: dict[str, list[str]]) -> Response:
        reasons = self.not_ready()
        if not reasons:
            return 200, "text/plain; charset=utf-8", b"ready\n"
        return 503, "text/plain; charset=utf-8", "".join(f"not ready: {r}\n" for r in reasons).encode()

    def not_ready(self) -> list[str]:
        """Why this edge is not ready; empty when it is."""
        reasons = []
        if not self.cache.ready():
            missing = [s for s in self.cache.preload if self.cache.current(s) is None]
            reasons.append(f"no snapshot yet for {', '.join(missing)}")
        lost = self.connection.disconnected_for() if self.connection is not None else 0.0
        if lost > self.max_lag:
            reasons.append(f"NATS lost for {lost:.0f}s (more than --ready-max-lag {self.max_lag:g}s)")
        for scope, lag in sorted(self.cache.lags().items()):
            if lag > self.max_lag:
                reasons.append(
                    f"scope {scope} serves a version older than the ledger head since {lag:.0f}s"
                    f" (more than --ready-max-lag {self.max_lag:g}s)"
                )
        return reasons


class DebugApi(_Routes):
    """The pages of --debug-listen, over the edge's cache and streams."""

    def __init__(self, cache: SnapshotCache, streams: StreamTable) -> None:
        self.cache = cache
        self.streams = streams
        self.routes = {
            "/debug/syncz": self.syncz,
            "/debug/configz": self.configz,
            "/debug/scopez": self.scopez,
            "/": self.index,
        }

    def syncz(self, query: dict[str, list[str]]) -> Response:
        entries = self.streams.syncz()
        proxy = query.get("proxy", [None])[0]
        if proxy:
            entries = [e for e in entries if e["proxy"] == proxy]
        return _json(200, entries)

    def scopez(self, _query: dict[str, list[str]]) -> Response:
        return _json(200, self.cache.status())

    def configz(self, query: dict[str, list[str]]) -> Response:
        """The served snapshot of each scope (or `?scope=`) as Envoy JSON, private keys redacted."""
        wanted = query.get("scope")
        status = self.cache.status()
        out: dict[str, Any] = {}
        for scope in self.cache.scopes():
            if wanted and scope not in wanted:
                continue
            snap = self.cache.current(scope)
            entry: dict[str, Any] = {"status": status.get(scope, {})}
            if snap is not None:
                entry.update(
                    version=snap.version_info,
                    digest=snap.digest,
                    translator_version=snap.translator_version,
                    resources={
                        short_type(t): [to_json(snap.of(t)[name].body) for name in sorted(snap.of(t))]
                        for t in snap.type_urls()
                    },
                )
            out[scope] = entry
        if wanted and not out:
            return _json(404, {"error": f"scope {wanted[0]!r} is not followed by this edge"})
        return _json(200, out)


class HttpServer:
    """asyncio HTTP/1.1 server for a ProbeApi or a DebugApi."""

    def __init__(self, api: _Routes) -> None:
        self.api = api
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(self._serve, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._exchange(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except Exception:
            log.exception("HTTP request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if len(head) > _MAX_HEADER_BYTES:
            raise ConnectionError("header too large")
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3:
            await self._write(writer, (400, "text/plain", b"bad request\n"), head_only=False)
            return
        method, target, _version = parts
        if method not in ("GET", "HEAD"):
            await self._write(writer, (405, "text/plain", b"method not allowed\n"), head_only=False)
            return
        response = self.api.handle(target)
        await self._write(writer, response, head_only=method == "HEAD")

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, response: Response, head_only: bool) -> None:
        status, content_type, body = response
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        writer.write(head if head_only else head + body)
        await writer.drain()
