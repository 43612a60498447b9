"""The conformance runner's HTTP/2 client against the echo backend's h2c."""

from __future__ import annotations

from bench.conformance import h2
from xdsbus_dev.echo import EchoIdentity, EchoServer


async def test_h2c_prior_knowledge_round_trip() -> None:
    async with EchoServer(EchoIdentity(pod="p-1-2", namespace="ns", service="s")) as echo:
        response = await h2.request(
            "GET",
            "127.0.0.1",
            echo.port,
            "/some/path?q=1",
            authority="example.com",
            headers=[("X-Test", "yes"), ("Host", "ignored"), ("X-Echo-Set-Header", "X-Out:1")],
        )
    assert response.status == 200
    body = response.body.decode()
    assert '"path": "/some/path?q=1"' in body or '"path":"/some/path?q=1"' in body
    assert ("x-out", "1") in [(k.lower(), v) for k, v in response.headers]
    assert echo.log[-1].proto == "HTTP/2.0"
    assert echo.log[-1].header("x-test") == "yes"
