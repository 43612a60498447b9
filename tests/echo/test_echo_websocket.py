"""The echo backend's websocket on `/ws` (RFC 6455), spoken to by aiohttp's client and, for what a real
client never sends (fragments, protocol errors, raw handshakes), by hand-made frames."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from xdsbus_dev import echo_websocket
from xdsbus_dev.echo import EchoIdentity, EchoServer
from xdsbus_dev.harness import http

# The example handshake of RFC 6455 §1.3.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA
TIMEOUT = 5.0


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer(EchoIdentity(pod="echo-ws-5d9f7c-x2k4p", namespace="demo", service="echo-ws"))
    async with server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as client:
        yield client


def ws_url(echo: EchoServer, path: str = "/ws") -> str:
    return f"ws://127.0.0.1:{echo.port}{path}"


def upgrade_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": RFC_KEY,
        "Sec-WebSocket-Version": "13",
    }
    headers.update({name.replace("_", "-"): value for name, value in overrides.items()})
    return headers


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked frame as a client sends it."""
    mask = b"\x37\xfa\x21\x3d"
    size = len(payload)
    if size < 126:
        length = bytes([0x80 | size])
    elif size < 65536:
        length = bytes([0x80 | 126]) + size.to_bytes(2, "big")
    else:
        length = bytes([0x80 | 127]) + size.to_bytes(8, "big")
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    return bytes([(0x80 if fin else 0) | opcode]) + length + mask + masked


async def server_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """(opcode, payload) of one whole frame from the server, which must not mask it."""
    first, second = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    assert first & 0x80, "the echo answers with whole frames"
    assert not second & 0x80, "server frames are never masked"
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
    return first & 0x0F, await reader.readexactly(size)


async def raw_websocket(echo: EchoServer) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose opening handshake is done (and checked against RFC 6455's example)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", echo.port)
    lines = ["GET /ws HTTP/1.1", "Host: echo.demo", *(f"{k}: {v}" for k, v in upgrade_headers().items())]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    status_line, *header_lines = head.decode().strip().split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    assert status_line == "HTTP/1.1 101 Switching Protocols"
    assert headers["upgrade"].lower() == "websocket"
    assert headers["connection"].lower() == "upgrade"
    assert headers["sec-websocket-accept"] == RFC_ACCEPT
    assert "content-length" not in headers
    return reader, writer


async def assert_closed_by_server(reader: asyncio.StreamReader) -> None:
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""


async def test_text_and_binary_messages_come_back_unchanged(
    echo: EchoServer, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(ws_url(echo), origin="ws://gateway/echo-test") as ws:
        await ws.send_str("Websocket Support!")
        assert (await ws.receive(TIMEOUT)).data == "Websocket Support!"
        await ws.send_bytes(bytes([1, 2, 3, 4, 5, 6, 7]))
        message = await ws.receive(TIMEOUT)
        assert message.type == aiohttp.WSMsgType.BINARY
        assert message.data == bytes([1, 2, 3, 4, 5, 6, 7])
        await ws.send_str("ünïcødé ✓")
        message = await ws.receive(TIMEOUT)
        assert message.type == aiohttp.WSMsgType.TEXT
        assert message.data == "ünïcødé ✓"


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 100_000, 3 * 1024 * 1024])
async def test_every_length_encoding(echo: EchoServer, session: aiohttp.ClientSession, size: int) -> None:
    # 7-bit lengths up to 125, 16-bit up to 65535, 64-bit above.
    payload = bytes(i % 251 for i in range(size))
    async with session.ws_connect(ws_url(echo), max_msg_size=0) as ws:
        await ws.send_bytes(payload)
        assert (await ws.receive(TIMEOUT)).data == payload
        await ws.send_str("x" * size)
        assert (await ws.receive(TIMEOUT)).data == "x" * size


async def test_ping_is_answered_with_its_payload(echo: EchoServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(ws_url(echo), autoping=False) as ws:
        await ws.ping(b"are you there")
        message = await ws.receive(TIMEOUT)
        assert message.type == aiohttp.WSMsgType.PONG
        assert message.data == b"are you there"


async def test_close_handshake(echo: EchoServer, session: aiohttp.ClientSession) -> None:
    async with session.ws_connect(ws_url(echo)) as ws:
        await ws.send_str("before closing")
        assert (await ws.receive(TIMEOUT)).data == "before closing"
        assert await ws.close(code=4001, message=b"done")
        # The server's close frame carries the status code the client sent.
        assert ws.close_code == 4001


async def test_close_frame_is_answered_and_the_server_ends_the_connection(echo: EchoServer) -> None:
    reader, writer = await raw_websocket(echo)
    writer.write(client_frame(CLOSE, (1000).to_bytes(2, "big") + b"bye"))
    assert await server_frame(reader) == (CLOSE, (1000).to_bytes(2, "big"))
    await assert_closed_by_server(reader)
    writer.close()


async def test_fragmented_message_with_a_ping_in_between(echo: EchoServer) -> None:
    reader, writer = await raw_websocket(echo)
    writer.write(client_frame(TEXT, b"Websocket ", fin=False))
    writer.write(client_frame(PING, b"mid-message"))
    writer.write(client_frame(0x0, b"Supp", fin=False))
    writer.write(client_frame(0x0, b"ort!"))
    writer.write(client_frame(BINARY, b"\x00" * 70_000))
    # Control frames may come between fragments and are answered at once.
    assert await server_frame(reader) == (PONG, b"mid-message")
    assert await server_frame(reader) == (TEXT, b"Websocket Support!")
    assert await server_frame(reader) == (BINARY, b"\x00" * 70_000)
    writer.close()


@pytest.mark.parametrize(
    ("frames", "code"),
    [
        pytest.param([client_frame(0x0, b"orphan")], 1002, id="continuation-without-a-message"),
        pytest.param(
            [client_frame(TEXT, b"a", fin=False), client_frame(TEXT, b"b")],
            1002,
            id="message-inside-a-message",
        ),
        pytest.param([bytes([0x81, 0x02]) + b"hi"], 1002, id="unmasked"),
        pytest.param([client_frame(0x3, b"")], 1002, id="reserved-opcode"),
        pytest.param([client_frame(PING, b"x" * 126)], 1002, id="control-frame-too-long"),
        pytest.param([client_frame(TEXT, b"\xff\xfe")], 1007, id="text-not-utf8"),
    ],
)
async def test_protocol_errors_fail_the_connection(echo: EchoServer, frames: list[bytes], code: int) -> None:
    reader, writer = await raw_websocket(echo)
    writer.write(b"".join(frames))
    opcode, payload = await server_frame(reader)
    assert opcode == CLOSE
    assert int.from_bytes(payload[:2], "big") == code
    await assert_closed_by_server(reader)
    writer.close()


async def test_too_big_a_message_is_refused_before_its_payload_is_read() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(client_frame(TEXT, b"a" * 10, fin=False)[:2])
    with pytest.raises(echo_websocket.ProtocolError) as failure:
        await echo_websocket.read_frame(reader, max_payload=9)
    assert failure.value.code == 1009


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        pytest.param(upgrade_headers(Sec_WebSocket_Key="not base64!"), "Sec-WebSocket-Key", id="bad-key"),
        pytest.param(upgrade_headers(Sec_WebSocket_Key="c2hvcnQ="), "Sec-WebSocket-Key", id="short-key"),
        pytest.param(upgrade_headers(Sec_WebSocket_Version="8"), "Sec-WebSocket-Version", id="old-version"),
        pytest.param(
            upgrade_headers(Connection="keep-alive"), "Connection: Upgrade", id="no-connection-upgrade"
        ),
    ],
)
async def test_invalid_handshake_is_answered_400(
    echo: EchoServer, headers: dict[str, str], reason: str
) -> None:
    response = await http.get("127.0.0.1", echo.port, "/ws", headers=headers)
    assert response.status == 400
    assert reason in response.text
    if "Version" in reason:
        # RFC 6455 §4.4: the answer names the version the server speaks.
        assert response.header("sec-websocket-version") == "13"


async def test_invalid_handshake_fails_a_real_client(
    echo: EchoServer, session: aiohttp.ClientSession
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as failure:
        async with session.ws_connect(ws_url(echo), method="POST"):
            pass
    assert failure.value.status == 400


async def test_ws_without_upgrade_is_an_ordinary_echo(echo: EchoServer) -> None:
    response = await http.get("127.0.0.1", echo.port, "/ws?x=1")
    assert response.status == 200
    assert response.json()["path"] == "/ws?x=1"


async def test_websocket_requests_are_logged(
    echo: EchoServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xdsbus_dev.echo")
    async with session.ws_connect(ws_url(echo, "/ws?from=test")) as ws:
        await ws.send_str("hello")
        assert (await ws.receive(TIMEOUT)).data == "hello"
    assert [r.target for r in echo.log] == ["/ws?from=test"]
    assert echo.log[0].header("upgrade") == "websocket"
    assert echo.requests_served == 1
    assert any("Echoing back request made to /ws?from=test" in r.getMessage() for r in caplog.records)
