"""The echo backend against its contract (docs/conformance.md §4)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator

import pytest

from xdsbus_dev.echo import EchoIdentity, EchoServer, canonical_header_key, parse_duration
from xdsbus_dev.harness import http
from xdsbus_dev.harness.processes import free_port


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer(EchoIdentity(pod="echo-a-5d9f7c-x2k4p", namespace="demo", service="echo-a"))
    async with server:
        yield server


async def test_answers_with_the_json_contract(echo: EchoServer) -> None:
    response = await http.get(
        "127.0.0.1",
        echo.port,
        "/some/path?x=1&y=%20z",
        host_header="foo.com:8080",
        headers={"x-custom": "one", "Accept": "*/*"},
    )
    assert response.status == 200
    assert response.header("content-type") == "application/json"
    body = response.json()
    assert body["path"] == "/some/path?x=1&y=%20z"
    assert body["host"] == "foo.com:8080"
    assert body["method"] == "GET"
    assert body["proto"] == "HTTP/1.1"
    assert body["namespace"] == "demo"
    assert body["service"] == "echo-a"
    assert body["pod"] == "echo-a-5d9f7c-x2k4p"
    assert body["ingress"] == ""
    assert body["httpPort"] == str(echo.port)
    assert "tls" not in body
    # Go's canonical header names; Host is reported as `host`, not among the headers.
    assert body["headers"]["X-Custom"] == ["one"]
    assert body["headers"]["Accept"] == ["*/*"]
    assert "Host" not in body["headers"]


async def test_repeated_headers_keep_every_value(echo: EchoServer) -> None:
    response = await http.get(
        "127.0.0.1",
        echo.port,
        "/",
        headers=[("X-Multi", "a"), ("x-multi", "b")],  # type: ignore[arg-type]
    )
    assert response.json()["headers"]["X-Multi"] == ["a", "b"]


async def test_methods_and_bodies(echo: EchoServer) -> None:
    response = await http.request("POST", "127.0.0.1", echo.port, "/post", body=b"hello")
    assert response.status == 200
    assert response.json()["method"] == "POST"
    assert response.json()["headers"]["Content-Length"] == ["5"]
    head = await http.request("HEAD", "127.0.0.1", echo.port, "/")
    assert head.status == 200 and head.body == b""


async def test_chunked_request_body_is_consumed(echo: EchoServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
    writer.write(
        b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    first = await http.read_response(reader)
    second = await http.read_response(reader)
    assert first.json()["path"] == "/chunked"
    assert second.json()["path"] == "/next"
    writer.close()


async def test_echo_set_header_sets_response_headers(echo: EchoServer) -> None:
    response = await http.get(
        "127.0.0.1", echo.port, "/", headers={"X-Echo-Set-Header": "X-Foo: bar, x-baz:qux"}
    )
    assert response.header("X-Foo") == "bar"
    assert response.header("x-baz") == "qux"
    assert response.json()["headers"]["X-Echo-Set-Header"] == ["X-Foo: bar, x-baz:qux"]
    empty = await http.get("127.0.0.1", echo.port, "/", headers={"X-Echo-Set-Header": ""})
    assert empty.status == 200


@pytest.mark.parametrize("code", [200, 204, 301, 404, 418, 500, 503])
async def test_status_path_answers_that_status(echo: EchoServer, code: int) -> None:
    response = await http.get("127.0.0.1", echo.port, f"/status/{code}")
    assert response.status == code
    assert response.body == b""


async def test_bad_status_path_is_a_bad_request(echo: EchoServer) -> None:
    assert (await http.get("127.0.0.1", echo.port, "/status/abc")).status == 400
    assert (await http.get("127.0.0.1", echo.port, "/status/999")).status == 400


async def test_delay_waits_before_answering(echo: EchoServer) -> None:
    started = time.monotonic()
    response = await http.get("127.0.0.1", echo.port, "/slow?delay=300ms")
    assert response.status == 200
    assert time.monotonic() - started >= 0.3
    assert response.json()["path"] == "/slow?delay=300ms"
    assert (await http.get("127.0.0.1", echo.port, "/?delay=soon")).status == 400


async def test_delay_does_not_block_other_requests(echo: EchoServer) -> None:
    slow = asyncio.create_task(http.get("127.0.0.1", echo.port, "/?delay=2s"))
    started = time.monotonic()
    fast = await http.get("127.0.0.1", echo.port, "/fast")
    assert fast.status == 200 and time.monotonic() - started < 1.5
    assert not slow.done()
    slow.cancel()


async def test_keep_alive_serves_many_requests_on_one_connection(echo: EchoServer) -> None:
    async with http.Connection("127.0.0.1", echo.port) as conn:
        for i in range(5):
            response = await conn.request("GET", f"/{i}", host="keep.alive")
            assert response.status == 200 and response.json()["path"] == f"/{i}"
            assert not response.closed
        assert conn.is_open
        last = await conn.request("GET", "/bye", close=True)
        assert last.header("connection") == "close"
    assert echo.requests_served == 6


async def test_http10_closes_unless_keep_alive(echo: EchoServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
    writer.write(b"GET /old HTTP/1.0\r\n\r\n")
    response = await http.read_response(reader)
    assert response.json()["proto"] == "HTTP/1.0"
    assert await reader.read() == b""  # closed by the server
    writer.close()


async def test_retry_fails_the_first_attempts_per_uuid(echo: EchoServer) -> None:
    target = "/retry/x?uuid=u1&succeedAfter=2&responseCode=502"
    statuses = [(await http.get("127.0.0.1", echo.port, target)).status for _ in range(3)]
    assert statuses == [502, 502, 200]
    # Without responseCode a failing attempt resets the connection (the suite's connection-error case);
    # delayRetry makes each failure wait first.
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await http.get("127.0.0.1", echo.port, "/retry/x?uuid=u2&succeedAfter=1")
    assert (await http.get("127.0.0.1", echo.port, "/retry/x?uuid=u2&succeedAfter=1")).status == 200
    started = asyncio.get_running_loop().time()
    delayed = "/retry/x?uuid=u3&succeedAfter=1&responseCode=500&delayRetry=200ms"
    assert (await http.get("127.0.0.1", echo.port, delayed)).status == 500
    assert asyncio.get_running_loop().time() - started >= 0.2


async def test_malformed_request_gets_400_and_close(echo: EchoServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
    writer.write(b"NONSENSE\r\n\r\n")
    response = await http.read_response(reader)
    assert response.status == 400
    assert await reader.read() == b""
    writer.close()
    # HTTP/1.1 demands a Host header.
    reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
    writer.write(b"GET / HTTP/1.1\r\n\r\n")
    assert (await http.read_response(reader)).status == 400
    writer.close()


async def test_stop_closes_open_connections() -> None:
    server = await EchoServer(EchoIdentity(pod="p-x-y")).start()
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    await asyncio.wait_for(server.stop(), 5)
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


def test_canonical_header_key() -> None:
    assert canonical_header_key("x-echo-set-header") == "X-Echo-Set-Header"
    assert canonical_header_key("USER-AGENT") == "User-Agent"
    assert canonical_header_key("content-length") == "Content-Length"
    assert canonical_header_key("bad header") == "bad header"


def test_parse_duration() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("1.5h") == 5400.0
    assert parse_duration("0") == 0.0
    for bad in ("", "10", "s", "1x"):
        with pytest.raises(ValueError):
            parse_duration(bad)


async def test_cli_serves_and_stops_on_sigterm() -> None:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xdsbus_dev.echo",
        "--port",
        str(port),
        "--pod",
        "echo-b-7c9d5f-q2x8m",
        "--namespace",
        "demo",
        "--service",
        "echo-b",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await http.wait_listening(port)
        body = (await http.get("127.0.0.1", port, "/hello", host_header="demo.local")).json()
        assert (body["pod"], body["namespace"], body["service"], body["httpPort"]) == (
            "echo-b-7c9d5f-q2x8m",
            "demo",
            "echo-b",
            str(port),
        )
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        out = (await proc.stdout.read()).decode() if proc.stdout else ""
        assert "Echoing back request made to /hello to client" in out
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGKILL)
            await proc.wait()
