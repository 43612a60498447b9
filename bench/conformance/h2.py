"""A minimal HTTP/2 client for the conformance runner: one request per connection, over TLS with ALPN h2
(the suite's H2 protocol) or in cleartext with prior knowledge (H2C_PRIOR_KNOWLEDGE).

Enough for a small request without a body and a small answer: no flow control beyond the defaults (an
echo JSON body is far below the 64 KiB initial window), no server push, no priority. HPACK comes from the
echo backend's implementation (xdsbus_dev.echo), which both sides of our tests already rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass, field

from xdsbus_dev.echo import HpackDecoder, hpack_encode

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
# Request headers HTTP/2 forbids (connection-specific) or carries as pseudo-headers.
_DROPPED = frozenset({"host", "connection", "keep-alive", "transfer-encoding", "upgrade", "proxy-connection"})


class H2ClientError(Exception):
    """The server reset the stream, went away or spoke something that is not HTTP/2."""


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    proto: str = "HTTP/2.0"


def alpn_context(cadata: str, *, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context trusting `cadata` that offers h2 only. Made once per run: a context is costly."""
    context = ssl.create_default_context(cadata=cadata)
    context.check_hostname = check_hostname
    context.set_alpn_protocols(["h2"])
    return context


def frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def _unpad(flags: int, payload: bytes, kind: int) -> bytes:
    if flags & PADDED:
        pad = payload[0]
        payload = payload[1 : len(payload) - pad]
    if kind == HEADERS and flags & PRIORITY:
        payload = payload[5:]
    return payload


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, int, int, bytes]:
    head = await reader.readexactly(9)
    length = int.from_bytes(head[:3], "big")
    stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
    return head[3], head[4], stream, await reader.readexactly(length)


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request_headers: list[tuple[str, str]]
) -> Response:
    writer.write(
        PREFACE
        + frame(SETTINGS, 0, 0)
        + frame(HEADERS, END_HEADERS | END_STREAM, 1, hpack_encode(request_headers))
    )
    await writer.drain()
    decoder = HpackDecoder()
    block = bytearray()
    response: Response | None = None
    body = bytearray()
    # END_STREAM may sit on a HEADERS frame whose block CONTINUATION frames complete.
    ended = False
    while True:
        kind, flags, stream, payload = await _read_frame(reader)
        if kind == SETTINGS and not flags & ACK:
            writer.write(frame(SETTINGS, ACK, 0))
        elif kind == PING and not flags & ACK:
            writer.write(frame(PING, ACK, 0, payload))
        elif kind == GOAWAY:
            raise H2ClientError(f"GOAWAY, error code {int.from_bytes(payload[4:8], 'big')}")
        elif stream != 1:
            continue
        elif kind == RST_STREAM:
            raise H2ClientError(f"stream reset, error code {int.from_bytes(payload[:4], 'big')}")
        elif kind in (HEADERS, CONTINUATION):
            if kind == HEADERS:
                block += _unpad(flags, payload, kind)
                ended = bool(flags & END_STREAM)
            else:
                block += payload
            if flags & END_HEADERS:
                headers = decoder.decode(bytes(block))
                block.clear()
                status = int(dict(headers).get(":status", "0"))
                if response is None and not 100 <= status < 200:
                    response = Response(status, [(k, v) for k, v in headers if not k.startswith(":")])
                if ended and response is not None:
                    break
        elif kind == DATA:
            body += _unpad(flags, payload, kind)
            if flags & END_STREAM:
                break
    if response is None:
        raise H2ClientError("stream ended without a response")
    response.body = bytes(body)
    return response


async def request(
    method: str,
    host: str,
    port: int,
    target: str,
    *,
    authority: str,
    headers: list[tuple[str, str]] | None = None,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
    timeout: float = 10.0,
) -> Response:
    """One request on a fresh connection (TLS when `tls` is given, made with `alpn_context`; else h2c)."""
    context = tls
    opened = asyncio.open_connection(
        host, port, ssl=context, server_hostname=server_name if context else None
    )
    reader, writer = await asyncio.wait_for(opened, timeout)
    try:
        if context is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            if ssl_object is None or ssl_object.selected_alpn_protocol() != "h2":
                raise H2ClientError("the server did not negotiate h2")
        pairs = [
            (":method", method),
            (":scheme", "https" if context else "http"),
            (":authority", authority),
            (":path", target),
        ] + [(k.lower(), v) for k, v in (headers or []) if k.lower() not in _DROPPED]
        return await asyncio.wait_for(_exchange(reader, writer, pairs), timeout)
    except asyncio.IncompleteReadError as exc:
        raise H2ClientError("connection closed mid-response") from exc
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
