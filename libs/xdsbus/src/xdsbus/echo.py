"""An echo backend for demos and conformance tests: every request is answered with a JSON description of
itself and of the pod that served it (the contract of the Gateway API conformance suite's echo server).

Plain asyncio streams, HTTP/1.1 with keep-alive, no threads:

- body `{path, host, method, proto, headers: {Name: [values]}, namespace, ingress, service, pod, httpPort}`
  with `path` the raw RequestURI (query included) and header names in Go's canonical form (the Host
  header is reported as `host`, not among `headers`, as Go's net/http does);
- `X-Echo-Set-Header: name:value,...` sets response headers;
- `?delay=<duration>` (Go syntax: `300ms`, `1.5s`, `1m`) waits before answering;
- `/status/NNN` answers with that status and no body;
- `/retry/...?uuid=U&succeedAfter=N[&responseCode=C]` fails the first N requests per uuid with C (503);
- `/health` answers 200 `OK`.

Not implemented: TLS (so `tls` is never present), `/ws` and the h2c port.
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
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("xdsbus.echo")

MAX_LINE = 64 * 1024
MAX_HEADERS = 200
MAX_BODY = 16 * 1024 * 1024

_REASONS = {
    100: "Continue",
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
    def keep_alive(self) -> bool:
        tokens = {t.strip().lower() for v in self.header_values("connection") for t in v.split(",")}
        if self.proto == "HTTP/1.0":
            return "keep-alive" in tokens
        return "close" not in tokens


async def read_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Request | None:
    """One request off the connection; None on a clean end of stream before a request starts."""
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
    listener and every open connection."""

    def __init__(self, identity: EchoIdentity, host: str = "127.0.0.1", port: int = 0) -> None:
        self.identity = identity
        self.host = host
        self.port = port
        self.requests_served = 0
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._retries: dict[str, int] = {}

    async def start(self) -> EchoServer:
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, limit=MAX_LINE, reuse_address=True
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
        try:
            while True:
                try:
                    request = await read_request(reader, writer)
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
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def handle(self, request: Request, client: str = "") -> tuple[int, list[tuple[str, str]], bytes]:
        """Status, headers and body for one request."""
        log.info("Echoing back request made to %s to client (%s)", request.target, client)
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
                return failure, [("Content-Type", "text/plain; charset=utf-8")], b"retry\n"
        headers: list[tuple[str, str]] = []
        for spec in request.header_values("x-echo-set-header"):
            for pair in spec.split(","):
                name, sep, value = pair.partition(":")
                if sep and name.strip():
                    headers.append((name.strip(), value.strip()))
        headers += [("Content-Type", "application/json"), ("X-Content-Type-Options", "nosniff")]
        return 200, headers, self.describe(request)

    def _retry_failure(self, query: dict[str, list[str]]) -> int | None:
        uuid = query.get("uuid", [""])[0]
        try:
            succeed_after = int(query.get("succeedAfter", ["0"])[0])
            code = int(query.get("responseCode", ["503"])[0])
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
        return json.dumps(body, indent=1).encode()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `xdsbus echo`; defaults from the echo server's usual environment variables."""
    env = os.environ.get
    parser.add_argument("--port", type=int, default=int(env("HTTP_PORT", "3000")))
    parser.add_argument("--host", default=env("XDSBUS_ECHO_HOST", "127.0.0.1"), help="address to bind")
    parser.add_argument("--pod", default=env("POD_NAME", socket.gethostname()))
    parser.add_argument("--namespace", default=env("NAMESPACE", "default"))
    parser.add_argument("--service", default=env("SERVICE_NAME", ""))
    parser.add_argument("--ingress", default=env("INGRESS_NAME", ""))
    parser.add_argument("--log-level", default=env("XDSBUS_LOG_LEVEL", "info"))


async def _serve(args: argparse.Namespace, ready: Callable[[EchoServer], None] | None = None) -> int:
    server = EchoServer(
        EchoIdentity(pod=args.pod, namespace=args.namespace, service=args.service, ingress=args.ingress),
        host=args.host,
        port=args.port,
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
    """Entry of `xdsbus echo`: serve until SIGINT or SIGTERM."""
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(message)s",
    )
    try:
        return asyncio.run(_serve(args))
    except OSError as exc:
        print(f"xdsbus echo: cannot listen on {args.host}:{args.port}: {exc}", flush=True)
        return 1
