"""An echo backend for demos and conformance tests: every request is answered with a JSON description of
itself and of the pod that served it (the contract of the Gateway API conformance suite's echo server).

Plain asyncio streams, HTTP/1.1 with keep-alive, no threads:

- body `{path, host, method, proto, headers: {Name: [values]}, namespace, ingress, service, pod, httpPort}`
  with `path` the raw RequestURI (query included) and header names in Go's canonical form (the Host
  header is reported as `host`, not among `headers`, as Go's net/http does);
- `X-Echo-Set-Header: name:value,...` sets response headers;
- `?delay=<duration>` (Go syntax: `300ms`, `1.5s`, `1m`) waits before answering;
- `/status/NNN` answers with that status and no body;
- `/retry/...?uuid=U&succeedAfter=N[&responseCode=C][&delayRetry=D]` fails the first N requests per uuid
  with status C, or without `responseCode` by resetting the connection; each failure waits D first;
- `/health` answers 200 `OK`;
- `GET /ws` with `Upgrade: websocket` becomes a websocket (RFC 6455, over HTTP/1.1) echoing every text and
  binary message back unchanged (xdsbus_dev.echo_websocket); an invalid opening handshake is answered 400,
  and `/ws` without `Upgrade` is echoed as any other request;
- with a TLS context (`EchoServer(tls=...)`, `python -m xdsbus_dev.echo --tls-cert --tls-key`) it serves
  HTTPS and the body gains `tls: {version, serverName, negotiatedProtocol, cipherSuite}`.

Every request served is also kept in `EchoServer.log` (the last 1000), so tests can see what reached a
backend whose answers nobody reads (a mirror target, retried attempts).

HTTP/2 with prior knowledge (h2c) is served on the same port: a connection starting with the HTTP/2
preface is read as HTTP/2 and its requests get the same answers, with `proto` `HTTP/2.0` (the HPACK
decoder knows the Huffman codes of printable ASCII only, which is what a proxy's headers hold).

Not implemented: h2 over TLS (ALPN offers http/1.1 only), websockets over HTTP/2 (RFC 8441).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import socket
import ssl
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from xdsbus_dev import echo_websocket

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024
MAX_HEADERS = 200
MAX_BODY = 16 * 1024 * 1024
LOG_SIZE = 1000
_SNI_ATTRIBUTE = "echo_server_name"
# The request log line the suite's echo server writes (docs/conformance.md §4).
_ECHOING = "Echoing back request made to %s to client (%s)"
_WEBSOCKET_PATH = "/ws"

_REASONS = {
    100: "Continue",
    101: "Switching Protocols",
    200: "OK",
    201: "Created",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    304: "Not Modified",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}

_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True)
class EchoIdentity:
    """Who answers: what the conformance suite reads from the JSON to tell backends apart."""

    pod: str
    namespace: str = "default"
    service: str = ""
    ingress: str = ""


# `_retry_failure`'s answer when a failing attempt has no status: the connection is reset instead.
_RESET = 0


class ResetConnection(ConnectionResetError):
    """Raised by `handle` to answer a request by resetting its connection."""


class BadRequest(Exception):
    """The request cannot be parsed; answer 400 (or the given status) and close."""

    def __init__(self, reason: str, status: int = 400) -> None:
        super().__init__(reason)
        self.status = status


def canonical_header_key(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey: `x-echo-set-header` -> `X-Echo-Set-Header`; names with
    characters outside the token set are returned unchanged."""
    if not _TOKEN.match(name):
        return name
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def parse_duration(text: str) -> float:
    """A Go duration string (`150ms`, `1h2m3.5s`, `0`) in seconds; ValueError when malformed."""
    text = text.strip()
    if text in ("0", "+0", "-0"):
        return 0.0
    sign = 1.0
    if text and text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise ValueError("empty duration")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _DURATION_PART.match(text, pos)
        if not match:
            raise ValueError(f"invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    return sign * total


@dataclass
class Request:
    method: str
    target: str
    proto: str
    headers: list[tuple[str, str]]
    body: bytes
    # The `tls` object of the JSON body when the request came over HTTPS.
    tls: dict[str, str] | None = None

    def header(self, name: str) -> str | None:
        """The first value of a header (case-insensitive), or None."""
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        lower = name.lower()
        return [value for key, value in self.headers if key.lower() == lower]

    @property
    def host(self) -> str:
        # As Go's net/http: the host of an absolute-form target wins over the Host header.
        if "://" in self.target:
            return urlsplit(self.target).netloc
        return self.header("host") or ""

    @property
    def wants_websocket(self) -> bool:
        """A request to `/ws` asking to become a websocket (whether its handshake is valid or not)."""
        return urlsplit(self.target).path == _WEBSOCKET_PATH and echo_websocket.wants_upgrade(self.headers)

    @property
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for v in self.header_values("connection") for t in v.split(",")}
        if self.proto == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def read_request(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes | None = None
) -> Request | None:
    """One request off the connection; None on a clean end of stream before a request starts.
    `line`: its request line when the caller already read it."""
    if line is None:
        line = await _read_line(reader)
    while line == b"":  # tolerate empty lines between requests (RFC 9112 §2.2)
        if reader.at_eof():
            return None
        line = await _read_line(reader)
    if line is None:
        return None
    try:
        method, target, proto = line.decode("latin-1").split(" ")
    except ValueError as exc:
        raise BadRequest(f"malformed request line {line[:100]!r}") from exc
    if not proto.startswith("HTTP/1.") or not _TOKEN.match(method) or not target:
        raise BadRequest(f"malformed request line {line[:100]!r}")
    headers: list[tuple[str, str]] = []
    while True:
        raw = await _read_line(reader)
        if raw is None:
            raise BadRequest("connection closed inside the headers")
        if raw == b"":
            break
        if len(headers) >= MAX_HEADERS:
            raise BadRequest("too many headers", 431)
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep or not _TOKEN.match(name):
            raise BadRequest(f"malformed header line {raw[:100]!r}")
        headers.append((name, value.strip(" \t")))
    request = Request(method, target, proto, headers, b"")
    if proto == "HTTP/1.1" and request.header("host") is None:
        raise BadRequest("HTTP/1.1 request without a Host header")
    if (request.header("expect") or "").lower() == "100-continue":
        writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.body = await _read_body(reader, request)
    return request


async def _read_line(reader: asyncio.StreamReader) -> bytes | None:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise BadRequest("connection closed inside a line") from exc
        return None
    except asyncio.LimitOverrunError as exc:
        raise BadRequest("line too long", 431) from exc
    return line.rstrip(b"\r\n")


async def _read_body(reader: asyncio.StreamReader, request: Request) -> bytes:
    encoding = (request.header("transfer-encoding") or "").lower()
    if encoding:
        if encoding.split(",")[-1].strip() != "chunked":
            raise BadRequest(f"unsupported transfer-encoding {encoding!r}", 501)
        chunks: list[bytes] = []
        size = 0
        while True:
            size_line = await _read_line(reader)
            if size_line is None:
                raise BadRequest("connection closed inside a chunked body")
            try:
                length = int(size_line.split(b";")[0].strip(), 16)
            except ValueError as exc:
                raise BadRequest("malformed chunk size") from exc
            if length == 0:
                while (trailer := await _read_line(reader)) not in (b"", None):
                    del trailer
                return b"".join(chunks)
            size += length
            if size > MAX_BODY:
                raise BadRequest("body too large", 413)
            try:
                chunks.append(await reader.readexactly(length))
                await reader.readexactly(2)
            except asyncio.IncompleteReadError as exc:
                raise BadRequest("connection closed inside a chunk") from exc
    length_text = request.header("content-length")
    if length_text is None:
        return b""
    try:
        length = int(length_text)
    except ValueError as exc:
        raise BadRequest("malformed content-length") from exc
    if length < 0:
        raise BadRequest("negative content-length")
    if length > MAX_BODY:
        raise BadRequest("body too large", 413)
    try:
        return await reader.readexactly(length)
    except asyncio.IncompleteReadError as exc:
        raise BadRequest("connection closed inside the body") from exc


def _response(
    status: int,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    head: bool,
    close: bool,
    keep_alive_header: bool = False,
) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if status >= 200 and status not in (204, 304):
        lines.append(f"Content-Length: {len(body)}")
    if close:
        lines.append("Connection: close")
    elif keep_alive_header:
        lines.append("Connection: keep-alive")
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return payload if head or status in (204, 304) else payload + body


class EchoServer:
    """The echo backend on one port. `start()` binds (port 0 picks a free one), `stop()` closes the
    listener and every open connection. With `tls` it serves HTTPS only."""

    def __init__(
        self,
        identity: EchoIdentity,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.identity = identity
        self.host = host
        self.port = port
        self.tls = tls
        if tls is not None and tls.sni_callback is None:
            tls.sni_callback = _record_sni
        self.requests_served = 0
        # Every request read (answered or not yet), oldest first.
        self.log: deque[Request] = deque(maxlen=LOG_SIZE)
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._retries: dict[str, int] = {}

    async def start(self) -> EchoServer:
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, limit=MAX_LINE, reuse_address=True, ssl=self.tls
        )
        sock: socket.socket = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> EchoServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def serve_until(self, stop: asyncio.Event) -> None:
        if self._server is None:
            await self.start()
        await stop.wait()
        await self.stop()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        client = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        tls = _tls_description(writer.get_extra_info("ssl_object"))
        first = True
        try:
            while True:
                try:
                    line = None
                    if first:
                        first = False
                        line = await _read_line(reader)
                        if line == H2_PREFACE_LINE:
                            await _H2Connection(self, reader, writer, client, tls).serve()
                            return
                        if line is None:
                            return
                    request = await read_request(reader, writer, line)
                except BadRequest as exc:
                    writer.write(
                        _response(
                            exc.status,
                            [("Content-Type", "text/plain; charset=utf-8")],
                            f"{exc}\n".encode(),
                            head=False,
                            close=True,
                        )
                    )
                    await writer.drain()
                    return
                if request is None:
                    return
                request.tls = tls
                self.log.append(request)
                if request.wants_websocket:
                    await self._websocket(request, client, reader, writer)
                    return
                close = not request.keep_alive
                status, headers, body = await self.handle(request, client)
                writer.write(
                    _response(
                        status,
                        headers,
                        body,
                        head=request.method == "HEAD",
                        close=close,
                        keep_alive_header=request.proto == "HTTP/1.0",
                    )
                )
                await writer.drain()
                self.requests_served += 1
                if close:
                    return
        except ResetConnection:
            # A reset, not a clean close: what the suite's connection-error retry cases expect.
            writer.transport.abort()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(self, request: Request, client: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body for one request."""
        log.info(_ECHOING, request.target, client)
        url = urlsplit(request.target)
        path = url.path
        query = parse_qs(url.query, keep_blank_values=True)
        if path == "/health":
            return 200, [("Content-Type", "text/plain; charset=utf-8")], b"OK"
        if path.startswith("/status/"):
            try:
                code = int(path[len("/status/") :])
            except ValueError:
                code = 0
            if not 100 <= code <= 599:
                return 400, [("Content-Type", "text/plain; charset=utf-8")], b"invalid status code\n"
            return code, [], b""
        if "delay" in query:
            try:
                delay = parse_duration(query["delay"][0])
            except ValueError:
                return 400, [("Content-Type", "text/plain; charset=utf-8")], b"invalid delay\n"
            if delay > 0:
                await asyncio.sleep(delay)
        if path.startswith("/retry/") or path == "/retry":
            failure = self._retry_failure(query)
            if failure is not None:
                try:
                    delay = parse_duration(query.get("delayRetry", ["0s"])[0])
                except ValueError:
                    return 400, [("Content-Type", "text/plain; charset=utf-8")], b"invalid delayRetry\n"
                if delay > 0:
                    await asyncio.sleep(delay)
                if failure == _RESET:
                    raise ResetConnection(f"retry attempt for {request.target}")
                return failure, [("Content-Type", "text/plain; charset=utf-8")], b"retry\n"
        headers: list[tuple[str, str]] = []
        for spec in request.header_values("x-echo-set-header"):
            for pair in spec.split(","):
                name, sep, value = pair.partition(":")
                if sep and name.strip():
                    headers.append((name.strip(), value.strip()))
        headers += [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
        return 200, headers, self.describe(request)

    async def _websocket(
        self, request: Request, client: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        """A request for a websocket: the opening handshake, then an echo of every message until the
        connection ends (the connection is the websocket's, no further request follows on it)."""
        log.info(_ECHOING, request.target, client)
        try:
            headers = echo_websocket.handshake(request.method, request.proto, request.headers)
        except echo_websocket.HandshakeError as exc:
            headers = [("Content-Type", "text/plain; charset=utf-8"), *exc.headers]
            body = f"{exc}\n".encode()
            writer.write(_response(400, headers, body, head=request.method == "HEAD", close=True))
            await writer.drain()
            self.requests_served += 1
            return
        writer.write(_response(101, headers, b"", head=False, close=False))
        await writer.drain()
        self.requests_served += 1
        await echo_websocket.echo_messages(reader, writer)

    def _retry_failure(self, query: dict[str, list[str]]) -> int | None:
        uuid = query.get("uuid", [""])[0]
        try:
            succeed_after = int(query.get("succeedAfter", ["0"])[0])
            code = int(query["responseCode"][0]) if "responseCode" in query else _RESET
        except ValueError:
            return 400
        seen = self._retries.get(uuid, 0) + 1
        self._retries[uuid] = seen
        return code if seen <= succeed_after else None

    def describe(self, request: Request) -> bytes:
        """The JSON body: the request as the backend saw it, and who answered."""
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            if name.lower() == "host":
                continue
            headers.setdefault(canonical_header_key(name), []).append(value)
        body = {
            "path": request.target,
            "host": request.host,
            "method": request.method,
            "proto": request.proto,
            "headers": headers,
            "namespace": self.identity.namespace,
            "ingress": self.identity.ingress,
            "service": self.identity.service,
            "pod": self.identity.pod,
            "httpPort": str(self.port),
        }
        if request.tls is not None:
            body["tls"] = request.tls
        return json.dumps(body, indent=1).encode()


def _tls_description(ssl_object: ssl.SSLObject | None) -> dict[str, str] | None:
    """The `tls` object of a connection's answers (Go's echo server reports the same fields)."""
    if ssl_object is None:
        return None
    cipher = ssl_object.cipher()
    return {
        "version": ssl_object.version() or "",
        "serverName": str(getattr(ssl_object, _SNI_ATTRIBUTE, "") or ""),
        "negotiatedProtocol": ssl_object.selected_alpn_protocol() or "",
        "cipherSuite": cipher[0] if cipher else "",
    }


def _record_sni(ssl_object: ssl.SSLObject, server_name: str | None, _context: ssl.SSLContext) -> None:
    # A server-side SSLObject does not keep the SNI the client sent; this servername callback does.
    setattr(ssl_object, _SNI_ATTRIBUTE, server_name or "")


def server_context(cert_file: str, key_file: str | None = None) -> ssl.SSLContext:
    """A server TLS context for the echo backend (HTTP/1.1 over TLS; ALPN offers `http/1.1`)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_file, key_file)
    context.set_alpn_protocols(["http/1.1"])
    return context


# -- HTTP/2 with prior knowledge (h2c) ----------------------------------------------------------------
#
# Enough of RFC 9113 and RFC 7541 for a proxy speaking HTTP/2 to a backend: streams multiplexed on one
# connection, flow control, HPACK decoding (static and dynamic tables, Huffman strings). Answers are
# encoded without the dynamic table or Huffman, which every decoder accepts.

H2_PREFACE_LINE = b"PRI * HTTP/2.0"
_H2_PREFACE_REST = b"\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST_STREAM, _SETTINGS, _PING, _GOAWAY, _WINDOW_UPDATE, _CONTINUATION = (
    0,
    1,
    3,
    4,
    6,
    7,
    8,
    9,
)
_END_STREAM, _ACK, _END_HEADERS, _PADDED, _PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
_MAX_FRAME = 16384
_DEFAULT_WINDOW = 65535
_SETTINGS_INITIAL_WINDOW_SIZE = 0x4
_PROTOCOL_ERROR, _FLOW_CONTROL_ERROR, _COMPRESSION_ERROR = 0x1, 0x3, 0x9

_STATIC_TABLE: tuple[tuple[str, str], ...] = (
    (":authority", ""), (":method", "GET"), (":method", "POST"), (":path", "/"), (":path", "/index.html"),
    (":scheme", "http"), (":scheme", "https"), (":status", "200"), (":status", "204"), (":status", "206"),
    (":status", "304"), (":status", "400"), (":status", "404"), (":status", "500"), ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"), ("accept-language", ""), ("accept-ranges", ""), ("accept", ""),
    ("access-control-allow-origin", ""), ("age", ""), ("allow", ""), ("authorization", ""),
    ("cache-control", ""), ("content-disposition", ""), ("content-encoding", ""), ("content-language", ""),
    ("content-length", ""), ("content-location", ""), ("content-range", ""), ("content-type", ""),
    ("cookie", ""), ("date", ""), ("etag", ""), ("expect", ""), ("expires", ""), ("from", ""), ("host", ""),
    ("if-match", ""), ("if-modified-since", ""), ("if-none-match", ""), ("if-range", ""),
    ("if-unmodified-since", ""), ("last-modified", ""), ("link", ""), ("location", ""), ("max-forwards", ""),
    ("proxy-authenticate", ""), ("proxy-authorization", ""), ("range", ""), ("referer", ""), ("refresh", ""),
    ("retry-after", ""), ("server", ""), ("set-cookie", ""), ("strict-transport-security", ""),
    ("transfer-encoding", ""), ("user-agent", ""), ("vary", ""), ("via", ""), ("www-authenticate", ""),
)  # fmt: skip

# RFC 7541 Appendix B codes of the printable ASCII characters (space to `~`), in character order. Other
# octets (control characters, bytes above 127) are not expected in the headers a proxy sends here; a
# string holding one is a decoding error.
_HUFFMAN_PRINTABLE = (
    "010100 1111111000 1111111001 111111111010 1111111111001 010101 11111000 11111111010 1111111010 "
    "1111111011 11111001 11111111011 11111010 010110 010111 011000 00000 00001 00010 011001 011010 011011 "
    "011100 011101 011110 011111 1011100 11111011 111111111111100 100000 111111111011 1111111100 "
    "1111111111010 100001 1011101 1011110 1011111 1100000 1100001 1100010 1100011 1100100 1100101 1100110 "
    "1100111 1101000 1101001 1101010 1101011 1101100 1101101 1101110 1101111 1110000 1110001 1110010 "
    "11111100 1110011 11111101 1111111111011 1111111111111110000 1111111111100 11111111111100 100010 "
    "111111111111101 00011 100011 00100 100100 00101 100101 100110 100111 00110 1110100 1110101 101000 "
    "101001 101010 00111 101011 1110110 101100 01000 01001 101101 1110111 1111000 1111001 1111010 1111011 "
    "111111111111110 11111111100 11111111111101 1111111111101"
)
_HUFFMAN: dict[tuple[int, int], int] = {
    (len(bits), int(bits, 2)): 32 + i for i, bits in enumerate(_HUFFMAN_PRINTABLE.split())
}


class H2Error(Exception):
    """A connection error: answered with GOAWAY and this error code."""

    def __init__(self, reason: str, code: int = _PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.code = code


def huffman_decode(data: bytes) -> bytes:
    """An HPACK Huffman string (printable ASCII only, see _HUFFMAN_PRINTABLE)."""
    out = bytearray()
    code = bits = 0
    for byte in data:
        for shift in range(7, -1, -1):
            code = (code << 1) | ((byte >> shift) & 1)
            bits += 1
            symbol = _HUFFMAN.get((bits, code))
            if symbol is not None:
                out.append(symbol)
                code = bits = 0
            elif bits >= 30:
                raise H2Error("Huffman string with an unsupported symbol", _COMPRESSION_ERROR)
    # Padding: the most significant bits of EOS (all ones), shorter than a byte.
    if bits > 7 or code != (1 << bits) - 1:
        raise H2Error("bad Huffman padding", _COMPRESSION_ERROR)
    return bytes(out)


def _hpack_int(data: bytes, pos: int, prefix: int) -> tuple[int, int]:
    mask = (1 << prefix) - 1
    if pos >= len(data):
        raise H2Error("truncated header block", _COMPRESSION_ERROR)
    value = data[pos] & mask
    pos += 1
    if value < mask:
        return value, pos
    shift = 0
    while True:
        if pos >= len(data) or shift > 28:
            raise H2Error("bad integer in header block", _COMPRESSION_ERROR)
        byte = data[pos]
        pos += 1
        value += (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, pos


def _encode_int(value: int, prefix: int, first: int = 0) -> bytes:
    mask = (1 << prefix) - 1
    if value < mask:
        return bytes([first | value])
    out = bytearray([first | mask])
    value -= mask
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_encode(headers: list[tuple[str, str]]) -> bytes:
    """A header block of literals without indexing, names and values as they are (no Huffman)."""
    out = bytearray()
    for name, value in headers:
        raw_name, raw_value = name.encode("latin-1"), value.encode("latin-1")
        out += b"\x00" + _encode_int(len(raw_name), 7) + raw_name + _encode_int(len(raw_value), 7) + raw_value
    return bytes(out)


class HpackDecoder:
    """One connection's HPACK decoding state (the dynamic table the peer's encoder fills)."""

    def __init__(self, max_size: int = 4096) -> None:
        self.max_size = max_size
        self.table: deque[tuple[str, str]] = deque()
        self.size = 0

    def _entry(self, index: int) -> tuple[str, str]:
        if 1 <= index <= len(_STATIC_TABLE):
            return _STATIC_TABLE[index - 1]
        dynamic = index - len(_STATIC_TABLE) - 1
        if 0 <= dynamic < len(self.table):
            return self.table[dynamic]
        raise H2Error(f"header index {index} out of range", _COMPRESSION_ERROR)

    def _evict(self, room: int) -> None:
        while self.table and self.size + room > self.max_size:
            name, value = self.table.pop()
            self.size -= len(name) + len(value) + 32

    def _add(self, name: str, value: str) -> None:
        entry_size = len(name) + len(value) + 32
        self._evict(entry_size)
        if entry_size <= self.max_size:
            self.table.appendleft((name, value))
            self.size += entry_size

    def _string(self, data: bytes, pos: int) -> tuple[str, int]:
        huffman = pos < len(data) and bool(data[pos] & 0x80)
        length, pos = _hpack_int(data, pos, 7)
        if pos + length > len(data):
            raise H2Error("truncated string in header block", _COMPRESSION_ERROR)
        raw = data[pos : pos + length]
        return (huffman_decode(raw) if huffman else raw).decode("latin-1"), pos + length

    def decode(self, data: bytes) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        pos = 0
        while pos < len(data):
            byte = data[pos]
            if byte & 0x80:  # indexed
                index, pos = _hpack_int(data, pos, 7)
                headers.append(self._entry(index))
                continue
            if byte & 0xE0 == 0x20:  # dynamic table size update
                size, pos = _hpack_int(data, pos, 5)
                self.max_size = size
                self._evict(0)
                continue
            indexing = bool(byte & 0x40)
            index, pos = _hpack_int(data, pos, 6 if indexing else 4)
            if index:
                name = self._entry(index)[0]
            else:
                name, pos = self._string(data, pos)
            value, pos = self._string(data, pos)
            if indexing:
                self._add(name, value)
            headers.append((name, value))
        return headers


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


class _H2Stream:
    """A request stream: its header block while it arrives, then its headers, body and send window."""

    def __init__(self, window: int) -> None:
        self.block = bytearray()
        self.headers: list[tuple[str, str]] | None = None
        self.body = bytearray()
        self.window = window
        # END_STREAM came on the HEADERS frame (it may be followed by CONTINUATION frames).
        self.ended_by_headers = False


class _H2Connection:
    """One HTTP/2 connection of an EchoServer; requests are answered by EchoServer.handle."""

    def __init__(
        self,
        server: EchoServer,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        client: str,
        tls: dict[str, str] | None,
    ) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.client = client
        self.tls = tls
        self.decoder = HpackDecoder()
        self.streams: dict[int, _H2Stream] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.window = _DEFAULT_WINDOW
        self.initial_window = _DEFAULT_WINDOW
        self.window_changed = asyncio.Condition()
        self.write_lock = asyncio.Lock()
        # The stream whose header block CONTINUATION frames must continue, if any.
        self.continuing = 0

    async def _send(self, *frames: bytes) -> None:
        async with self.write_lock:
            self.writer.write(b"".join(frames))
            await self.writer.drain()

    async def serve(self) -> None:
        """After the preface's first line: the rest of it, then frames until the peer goes away."""
        try:
            if await self.reader.readexactly(len(_H2_PREFACE_REST)) != _H2_PREFACE_REST:
                raise H2Error("bad connection preface")
            await self._send(_frame(_SETTINGS, 0, 0))
            while True:
                head = await self.reader.readexactly(9)
                length = int.from_bytes(head[:3], "big")
                kind, flags = head[3], head[4]
                stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
                if length > _MAX_FRAME:
                    raise H2Error(f"frame of {length} bytes", 0x6)
                payload = await self.reader.readexactly(length)
                if self.continuing and (kind != _CONTINUATION or stream != self.continuing):
                    raise H2Error("header block interrupted")
                if kind == _GOAWAY:
                    break
                await self._frame(kind, flags, stream, payload)
        except H2Error as exc:
            log.warning("h2c connection from %s: %s", self.client, exc)
            last = max(self.streams, default=0)
            with contextlib.suppress(ConnectionError):
                await self._send(_frame(_GOAWAY, 0, 0, last.to_bytes(4, "big") + exc.code.to_bytes(4, "big")))
        except asyncio.IncompleteReadError:
            pass
        finally:
            for task in list(self.tasks):
                task.cancel()
            if self.tasks:
                await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _frame(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if kind == _SETTINGS:
            if not flags & _ACK:
                await self._settings(payload)
                await self._send(_frame(_SETTINGS, _ACK, 0))
        elif kind == _PING:
            if not flags & _ACK:
                await self._send(_frame(_PING, _ACK, 0, payload))
        elif kind == _WINDOW_UPDATE:
            increment = int.from_bytes(payload[:4], "big") & 0x7FFFFFFF
            async with self.window_changed:
                if stream == 0:
                    self.window += increment
                elif stream in self.streams:
                    self.streams[stream].window += increment
                self.window_changed.notify_all()
        elif kind == _RST_STREAM:
            self.streams.pop(stream, None)
        elif kind in (_HEADERS, _CONTINUATION):
            await self._headers(kind, flags, stream, payload)
        elif kind == _DATA:
            await self._data(flags, stream, payload)
        # PRIORITY and unknown frame types are ignored (RFC 9113 §5.5).

    async def _settings(self, payload: bytes) -> None:
        for offset in range(0, len(payload) - 5, 6):
            ident = int.from_bytes(payload[offset : offset + 2], "big")
            value = int.from_bytes(payload[offset + 2 : offset + 6], "big")
            if ident == _SETTINGS_INITIAL_WINDOW_SIZE:
                async with self.window_changed:
                    for open_stream in self.streams.values():
                        open_stream.window += value - self.initial_window
                    self.initial_window = value
                    self.window_changed.notify_all()

    @staticmethod
    def _unpad(flags: int, payload: bytes) -> bytes:
        if flags & _PADDED:
            if not payload or payload[0] >= len(payload):
                raise H2Error("bad padding")
            return payload[1 : len(payload) - payload[0]]
        return payload

    async def _headers(self, kind: int, flags: int, stream: int, payload: bytes) -> None:
        if stream == 0 or stream % 2 == 0:
            raise H2Error(f"headers on stream {stream}")
        if kind == _HEADERS:
            payload = self._unpad(flags, payload)
            if flags & _PRIORITY:
                payload = payload[5:]
            state = self.streams.get(stream)
            if state is None:
                state = self.streams[stream] = _H2Stream(self.initial_window)
            state.block = bytearray(payload)
            # END_STREAM rides on HEADERS even when CONTINUATION frames follow.
            state.ended_by_headers = bool(flags & _END_STREAM)
        else:
            state = self.streams.get(stream) or _H2Stream(self.initial_window)
            state.block += payload
        if not flags & _END_HEADERS:
            self.continuing = stream
            return
        self.continuing = 0
        decoded = self.decoder.decode(bytes(state.block))  # always, to keep the table in step
        if state.headers is None:
            state.headers = decoded
        if state.ended_by_headers:
            self._complete(stream)

    async def _data(self, flags: int, stream: int, payload: bytes) -> None:
        state = self.streams.get(stream)
        if payload:
            # Give the peer its window back at once: the echo reads every body whole.
            size = len(payload).to_bytes(4, "big")
            frames = [_frame(_WINDOW_UPDATE, 0, 0, size)]
            if state is not None and not flags & _END_STREAM:
                frames.append(_frame(_WINDOW_UPDATE, 0, stream, size))
            await self._send(*frames)
        if state is None:
            return
        state.body += self._unpad(flags, payload)
        if len(state.body) > MAX_BODY:
            raise H2Error("body too large", _FLOW_CONTROL_ERROR)
        if flags & _END_STREAM:
            self._complete(stream)

    def _complete(self, stream: int) -> None:
        state = self.streams.get(stream)
        if state is None or state.headers is None:
            return
        task = asyncio.create_task(self._answer(stream, state))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _answer(self, stream: int, state: _H2Stream) -> None:
        # A task of its own: a peer gone mid-answer is nobody's error.
        with contextlib.suppress(ConnectionError):
            await self._respond(stream, state)

    async def _respond(self, stream: int, state: _H2Stream) -> None:
        assert state.headers is not None
        pseudo = {name: value for name, value in state.headers if name.startswith(":")}
        headers = [(name, value) for name, value in state.headers if not name.startswith(":")]
        if ":authority" in pseudo and not any(name == "host" for name, _ in headers):
            headers.insert(0, ("host", pseudo[":authority"]))
        request = Request(
            pseudo.get(":method", ""), pseudo.get(":path", ""), "HTTP/2.0", headers, bytes(state.body)
        )
        request.tls = self.tls
        self.server.log.append(request)
        status, response_headers, body = await self.server.handle(request, self.client)
        if request.method == "HEAD" or status in (204, 304):
            body = b""
        fields = [(":status", str(status))]
        fields += [(name.lower(), value) for name, value in response_headers]
        if status not in (204, 304):
            fields.append(("content-length", str(len(body))))
        block = hpack_encode(fields)
        chunks = [block[i : i + _MAX_FRAME] for i in range(0, len(block), _MAX_FRAME)] or [b""]
        frames = []
        for i, chunk in enumerate(chunks):
            last = i == len(chunks) - 1
            flags = (_END_HEADERS if last else 0) | (_END_STREAM if not body and i == 0 else 0)
            frames.append(_frame(_HEADERS if i == 0 else _CONTINUATION, flags, stream, chunk))
        await self._send(*frames)
        sent = 0
        while sent < len(body):
            size = await self._reserve(stream, min(_MAX_FRAME, len(body) - sent))
            if not size:
                return  # reset by the peer
            end = sent + size >= len(body)
            await self._send(_frame(_DATA, _END_STREAM if end else 0, stream, body[sent : sent + size]))
            sent += size
        self.streams.pop(stream, None)
        self.server.requests_served += 1

    async def _reserve(self, stream: int, wanted: int) -> int:
        """Up to `wanted` bytes of DATA the peer's flow-control windows allow now (waits for some); 0 when
        the stream was reset."""
        async with self.window_changed:
            while True:
                state = self.streams.get(stream)
                if state is None:
                    return 0
                size = min(wanted, self.window, state.window)
                if size > 0:
                    self.window -= size
                    state.window -= size
                    return size
                await self.window_changed.wait()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the echo backend; defaults from the echo server's usual environment variables."""
    env = os.environ.get
    parser.add_argument("--port", type=int, default=int(env("HTTP_PORT", "3000")))
    parser.add_argument("--host", default=env("XDSBUS_ECHO_HOST", "127.0.0.1"), help="address to bind")
    parser.add_argument("--pod", default=env("POD_NAME", socket.gethostname()))
    parser.add_argument("--namespace", default=env("NAMESPACE", "default"))
    parser.add_argument("--service", default=env("SERVICE_NAME", ""))
    parser.add_argument("--ingress", default=env("INGRESS_NAME", ""))
    parser.add_argument("--log-level", default=env("XDSBUS_LOG_LEVEL", "info"))
    parser.add_argument("--tls-cert", default="", help="PEM certificate chain: serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", default="", help="PEM private key of --tls-cert")


async def _serve(args: argparse.Namespace, ready: Callable[[EchoServer], None] | None = None) -> int:
    server = EchoServer(
        EchoIdentity(pod=args.pod, namespace=args.namespace, service=args.service, ingress=args.ingress),
        host=args.host,
        port=args.port,
        tls=server_context(args.tls_cert, args.tls_key or None) if args.tls_cert else None,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await server.start()
    log.info(
        "echo: pod %s (service %s/%s) listening on %s:%d",
        args.pod,
        args.namespace,
        args.service,
        args.host,
        server.port,
    )
    if ready:
        ready(server)
    await server.serve_until(stop)
    return 0


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(f"xdsbus_dev.echo: cannot listen on {args.host}:{args.port}: {exc}", flush=True)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry of `python -m xdsbus_dev.echo`."""
    parser = argparse.ArgumentParser(
        prog="python -m xdsbus_dev.echo",
        description="an echo backend: answers every request with a JSON description of it",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
