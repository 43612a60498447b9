"""higress-config through a real Envoy (one Stack for the module): with the ConfigMap written, a
compressible response comes back gzip-encoded, spans reach a Zipkin collector, an idle client connection
is closed by the downstream idle timeout, a request header over maxRequestHeadersKb is refused with 431,
the backend sees x-real-ip, and responses carry no x-envoy-* header; a bad value shows in `xdsbus status`
(docs/global-options.md)."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import yaml

from tests.e2e.ingress_support import cli_status
from tests.fakes.zipkin_collector import ZipkinCollector
from xdsbus_dev.harness import http
from xdsbus_dev.harness.stack import HOST, NAMESPACE, Stack, endpoint_slice_manifest, service_manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

IDLE_TIMEOUT = 1
DRAIN_TIMEOUT = 5
OPTIONS = {
    # Out of range: reported, and the default (5) applies; the rest of gzip still does.
    "gzip": {"memoryLevel": 99},
    "tracing": {
        "enable": True,
        "sampling": 100,
        "zipkin": {"service": f"zipkin.{NAMESPACE}.svc.cluster.local", "port": "80"},
    },
    "downstream": {"idleTimeout": IDLE_TIMEOUT, "maxRequestHeadersKb": 4},
    "addXRealIpHeader": True,
    "disableXEnvoyHeaders": True,
}


def higress_config() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "higress-config", "namespace": "higress-system"},
        "data": {"higress": yaml.safe_dump(OPTIONS)},
    }


class Env:
    def __init__(self, stack: Stack, zipkin: ZipkinCollector, before: http.Response) -> None:
        self.stack = stack
        self.zipkin = zipkin
        # A response through Envoy before the ConfigMap existed.
        self.before = before


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def env(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Env]:
    zipkin = await ZipkinCollector().start()
    workdir: Path = tmp_path_factory.mktemp("global-options")
    try:
        async with Stack(workdir, edges=1, backends=("echo-a",)) as stack:
            before = await stack.wait(lambda: _ok(stack), what="demo.local answering")
            stack.write(
                "zipkin.yaml",
                [service_manifest("zipkin", zipkin.port), endpoint_slice_manifest("zipkin", zipkin.port)],
            )
            stack.write("higress-config.yaml", [higress_config()])

            async def applied() -> bool:
                response = await stack.curl("/a")
                return response.status == 200 and "X-Real-Ip" in response.json()["headers"]

            await stack.wait(applied, timeout=20, what="higress-config applied")
            yield Env(stack, zipkin, before)
    finally:
        await zipkin.stop()


async def _ok(stack: Stack) -> http.Response | None:
    response = await stack.curl("/a")
    return response if response.status == 200 else None


async def test_a_compressible_response_is_gzip_encoded(env: Env) -> None:
    # The echo's JSON body repeats the request headers: a 2 KiB header makes it longer than
    # minContentLength (1024 by default).
    headers = {"Accept-Encoding": "gzip", "X-Pad": "abc" * 700}
    response = await env.stack.curl("/a", headers=headers)
    assert response.status == 200
    assert response.header("content-encoding") == "gzip"
    body = gzip.decompress(response.body)
    assert len(body) > len(response.body)
    assert b'"X-Pad"' in body
    small = await env.stack.curl("/a", headers={"Accept-Encoding": "gzip"})
    assert small.header("content-encoding") is None, "under minContentLength"


async def test_spans_reach_the_zipkin_collector(env: Env) -> None:
    await env.stack.curl("/a?traced=1")

    async def span_seen() -> bool:
        return any("traced=1" in str(span.get("tags", {}).get("http.url", "")) for span in env.zipkin.spans)

    # Envoy reports spans in batches, every 5 s by default.
    await env.stack.wait(span_seen, timeout=15, interval=0.2, what="a span at the Zipkin collector")


async def test_an_idle_client_connection_is_closed(env: Env) -> None:
    assert env.stack.envoy is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", env.stack.gateway_port)
    try:
        writer.write(f"GET /a HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await writer.drain()
        response = await http.read_response(reader)
        assert response.status == 200 and not response.closed
        loop = asyncio.get_running_loop()
        answered = loop.time()
        # Nothing more is sent: once the connection was idle for IDLE_TIMEOUT seconds Envoy drains it, and
        # closes it after the connection manager's drain timeout (Envoy's default 5 s, as in Higress).
        assert await asyncio.wait_for(reader.read(), timeout=IDLE_TIMEOUT + DRAIN_TIMEOUT + 3) == b""
        assert loop.time() - answered >= IDLE_TIMEOUT * 0.8
    finally:
        writer.close()


async def test_headers_over_max_request_headers_kb_are_refused(env: Env) -> None:
    response = await env.stack.curl("/a", headers={"X-Big": "x" * 5000})
    assert response.status == 431
    assert (await env.stack.curl("/a", headers={"X-Big": "x" * 3000})).status == 200


async def test_the_backend_sees_x_real_ip(env: Env) -> None:
    response = await env.stack.curl("/a", headers={"X-Real-Ip": "6.6.6.6"})
    assert response.json()["headers"]["X-Real-Ip"] == ["127.0.0.1"], (
        "the peer's address, not the client's claim"
    )


async def test_no_x_envoy_headers_when_disabled(env: Env) -> None:
    assert any(name.lower().startswith("x-envoy-") for name, _ in env.before.headers), env.before.headers
    response = await env.stack.curl("/a")
    assert response.status == 200
    assert not [name for name, _ in response.headers if name.lower().startswith("x-envoy-")]
    # Toward the backend the router adds none either (x-envoy-expected-rq-timeout-ms and the like); the
    # connection manager's x-envoy-external-address stays, as in Higress, which also only sets the
    # router's suppress_envoy_headers.
    upstream = [name for name in response.json()["headers"] if name.lower().startswith("x-envoy-")]
    assert upstream == ["X-Envoy-External-Address"]


async def test_a_bad_value_is_in_the_config_map_status(env: Env) -> None:
    (status,) = await cli_status(env.stack, "ConfigMap/higress-system/higress-config")
    assert status["state"] == "accepted"
    assert status["warnings"] == [
        "ConfigMap higress-system/higress-config: gzip.memoryLevel: 99 is not between 1 and 9;"
        " the default 5 applies"
    ]
