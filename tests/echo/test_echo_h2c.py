"""The echo backend's HTTP/2 with prior knowledge (h2c), spoken to by a small frame-level client, and its
HPACK decoder against the examples of RFC 7541 Appendix C."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from xdsbus_dev.echo import EchoIdentity, EchoServer, H2Error, HpackDecoder, hpack_encode, huffman_decode
from xdsbus_dev.harness import http

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, SETTINGS, PING, GOAWAY, WINDOW_UPDATE = 0, 1, 4, 6, 7, 8


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


class H2Client:
    """Just enough HTTP/2 to send requests and collect whole responses per stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = HpackDecoder()
        self.frames: list[tuple[int, int, int, bytes]] = []

    @classmethod
    async def connect(cls, port: int) -> H2Client:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(PREFACE + frame(SETTINGS, 0, 0))
        return cls(reader, writer)

    def send(self, stream: int, method: str, path: str, body: bytes = b"", **headers: str) -> None:
        fields = [(":method", method), (":scheme", "http"), (":path", path), (":authority", "h2.demo")]
        fields += [(name.replace("_", "-"), value) for name, value in headers.items()]
        self.writer.write(frame(HEADERS, 0x4 | (0 if body else 0x1), stream, hpack_encode(fields)))
        if body:
            self.writer.write(frame(DATA, 0x1, stream, body))

    async def read_frame(self) -> tuple[int, int, int, bytes]:
        head = await asyncio.wait_for(self.reader.readexactly(9), 5)
        payload = await self.reader.readexactly(int.from_bytes(head[:3], "big"))
        got = (head[3], head[4], int.from_bytes(head[5:9], "big"), payload)
        self.frames.append(got)
        return got

    async def responses(self, count: int) -> list[tuple[int, dict[str, str], bytes]]:
        """`count` whole responses (stream, headers, body), in the order they ended."""
        headers: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytearray] = {}
        done: list[tuple[int, dict[str, str], bytes]] = []
        while len(done) < count:
            kind, flags, stream, payload = await self.read_frame()
            if kind == HEADERS:
                headers[stream] = dict(self.decoder.decode(payload))
                bodies[stream] = bytearray()
            elif kind == DATA:
                bodies[stream] += payload
            if kind in (HEADERS, DATA) and flags & 0x1:
                done.append((stream, headers[stream], bytes(bodies[stream])))
        return done

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    async with EchoServer(EchoIdentity(pod="echo-a-7c9d5f-1", namespace="demo", service="echo-a")) as server:
        yield server


@pytest.fixture
async def client(echo: EchoServer) -> AsyncIterator[H2Client]:
    client = await H2Client.connect(echo.port)
    yield client
    await client.close()


def body(data: bytes) -> Any:
    return json.loads(data)


async def test_answers_over_h2c_with_the_json_contract(echo: EchoServer, client: H2Client) -> None:
    client.send(1, "GET", "/some/path?x=1", x_custom="one", user_agent="test/1.0")
    [(stream, headers, data)] = await client.responses(1)
    assert stream == 1
    assert headers[":status"] == "200"
    assert headers["content-type"] == "application/json"
    assert headers["content-length"] == str(len(data))
    got = body(data)
    assert (got["proto"], got["method"], got["path"], got["host"]) == (
        "HTTP/2.0",
        "GET",
        "/some/path?x=1",
        "h2.demo",
    )
    assert got["headers"] == {"X-Custom": ["one"], "User-Agent": ["test/1.0"]}
    assert got["pod"] == "echo-a-7c9d5f-1"
    # The server's own SETTINGS came first, then the ACK of ours.
    assert [(k, f) for k, f, _, _ in client.frames[:2]] == [(SETTINGS, 0), (SETTINGS, 1)]
    assert [r.target for r in echo.log] == ["/some/path?x=1"]
    assert echo.requests_served == 1


async def test_bodies_statuses_and_extras(client: H2Client) -> None:
    client.send(1, "POST", "/post", body=b"hello", x_echo_set_header="X-Out:yes")
    client.send(3, "GET", "/status/404")
    client.send(5, "HEAD", "/head")
    answers = {stream: (headers, data) for stream, headers, data in await client.responses(3)}
    headers, data = answers[1]
    assert (headers[":status"], headers["x-out"], body(data)["method"]) == ("200", "yes", "POST")
    assert answers[3] == ({":status": "404", "content-length": "0"}, b"")
    assert answers[5][0][":status"] == "200" and answers[5][1] == b""
    # The request body was read, and its flow-control window given back.
    assert any(kind == WINDOW_UPDATE for kind, _, _, _ in client.frames)


async def test_streams_are_answered_concurrently(client: H2Client) -> None:
    client.send(1, "GET", "/slow?delay=300ms")
    client.send(3, "GET", "/fast")
    order = [stream for stream, _, _ in await client.responses(2)]
    assert order == [3, 1]


async def test_ping_is_acknowledged_and_goaway_ends_the_connection(client: H2Client) -> None:
    client.writer.write(frame(PING, 0, 0, b"12345678"))
    while (got := await client.read_frame())[0] != PING:
        pass
    assert got == (PING, 1, 0, b"12345678")
    client.writer.write(frame(GOAWAY, 0, 0, bytes(8)))
    assert await asyncio.wait_for(client.reader.read(), 5) == b""


async def test_a_broken_header_block_gets_goaway(client: H2Client) -> None:
    # Index 99 is neither in the static table nor in the (empty) dynamic one.
    client.writer.write(frame(HEADERS, 0x5, 1, bytes([0x80 | 99])))
    while (got := await client.read_frame())[0] != GOAWAY:
        pass
    assert int.from_bytes(got[3][4:8], "big") == 0x9  # COMPRESSION_ERROR


async def test_http1_still_works_on_the_same_port(echo: EchoServer) -> None:
    response = await http.get("127.0.0.1", echo.port, "/one")
    assert response.json()["proto"] == "HTTP/1.1"


def test_huffman_strings_of_rfc7541() -> None:
    examples = {
        "f1e3c2e5f23a6ba0ab90f4ff": "www.example.com",
        "a8eb10649cbf": "no-cache",
        "25a849e95ba97d7f": "custom-key",
        "25a849e95bb8e8b4bf": "custom-value",
        "6402": "302",
        "aec3771a4b": "private",
        "d07abe941054d444a8200595040b8166e082a62d1bff": "Mon, 21 Oct 2013 20:13:21 GMT",
        "9d29ad171863c78f0b97c8e9ae82ae43d3": "https://www.example.com",
        "9bd9ab": "gzip",
        "94e7821dd7f2e6c7b335dfdfcd5b3960d5af27087f3672c1ab270fb5291f9587316065c003ed4ee5b1063d5007": (
            "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
        ),
    }
    for encoded, text in examples.items():
        assert huffman_decode(bytes.fromhex(encoded)).decode() == text
    with pytest.raises(H2Error):
        huffman_decode(b"\x00")  # five zero bits are '0', then three zero bits of padding: invalid


def test_hpack_decoder_keeps_the_dynamic_table_of_rfc7541_c4() -> None:
    decoder = HpackDecoder()
    assert decoder.decode(bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff")) == [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", "www.example.com"),
    ]
    assert decoder.decode(bytes.fromhex("828684be5886a8eb10649cbf"))[-1] == ("cache-control", "no-cache")
    third = decoder.decode(bytes.fromhex("828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"))
    assert third == [
        (":method", "GET"),
        (":scheme", "https"),
        (":path", "/index.html"),
        (":authority", "www.example.com"),
        ("custom-key", "custom-value"),
    ]
    assert decoder.size == 164
    assert list(decoder.table) == [
        ("custom-key", "custom-value"),
        ("cache-control", "no-cache"),
        (":authority", "www.example.com"),
    ]
