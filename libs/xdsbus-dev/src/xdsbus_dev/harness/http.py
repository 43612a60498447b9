"""A small HTTP/1.1 client on asyncio streams (no threads, no extra dependency), for talking to Envoy's
listeners and admin, the edge's debug port and the echo backend."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Response:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes
    proto: str = "HTTP/1.1"
    closed: bool = field(default=False, repr=False)

    def header(self, name: str) -> str | None:
        lower = name.lower()
        for key, value in self.headers:
            if key.lower() == lower:
                return value
        return None

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


class HttpError(Exception):
    """The server answered something that is not HTTP/1.x."""


class Connection:
    """One keep-alive HTTP/1.1 connection; requests are sent one after another."""

    def __init__(
        self,
        host: str,
        port: int,
        timeout: float = 10.0,
        *,
        tls: ssl.SSLContext | None = None,
        server_name: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        # With `tls`, the connection is HTTPS and sends `server_name` as SNI.
        self.tls = tls
        self.server_name = server_name
        self.peer_certificate: bytes | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> Connection:
        if self.tls is None:
            opened = asyncio.open_connection(self.host, self.port)
        else:
            opened = asyncio.open_connection(
                self.host, self.port, ssl=self.tls, server_hostname=self.server_name or self.host
            )
        self._reader, writer = await asyncio.wait_for(opened, self.timeout)
        self._writer = writer
        if self.tls is not None:
            ssl_object = writer.get_extra_info("ssl_object")
            self.peer_certificate = ssl_object.getpeercert(binary_form=True) if ssl_object else None
        return self

    @property
    def is_open(self) -> bool:
        return self._writer is not None and not self._writer.is_closing()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
            self._writer = None
            self._reader = None

    async def __aenter__(self) -> Connection:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def request(
        self,
        method: str,
        target: str,
        *,
        host: str | None = None,
        headers: dict[str, str] | list[tuple[str, str]] | None = None,
        body: bytes = b"",
        close: bool = False,
    ) -> Response:
        if self._writer is None:
            await self.connect()
        assert self._reader is not None and self._writer is not None
        pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
        lines = [f"{method} {target} HTTP/1.1", f"Host: {host or f'{self.host}:{self.port}'}"]
        lines += [f"{name}: {value}" for name, value in pairs]
        if body or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(body)}")
        if close:
            lines.append("Connection: close")
        self._writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        response = await asyncio.wait_for(read_response(self._reader, head=method == "HEAD"), self.timeout)
        if close or response.closed:
            await self.close()
        return response


async def read_response(reader: asyncio.StreamReader, *, head: bool = False) -> Response:
    """One response (skipping 1xx interim responses)."""
    while True:
        status_line = (await reader.readuntil(b"\n")).decode("latin-1").rstrip("\r\n")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpError(f"not an HTTP/1.x status line: {status_line!r}")
        status = int(parts[1])
        headers: list[tuple[str, str]] = []
        while True:
            line = (await reader.readuntil(b"\n")).decode("latin-1").rstrip("\r\n")
            if not line:
                break
            name, _, value = line.partition(":")
            headers.append((name.strip(), value.strip()))
        if 100 <= status < 200:
            continue
        response = Response(status, parts[2] if len(parts) > 2 else "", headers, b"", parts[0])
        connection = (response.header("connection") or "").lower()
        response.closed = "close" in connection or (parts[0] == "HTTP/1.0" and "keep-alive" not in connection)
        if head or status in (204, 304):
            return response
        if (response.header("transfer-encoding") or "").lower().endswith("chunked"):
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    while (await reader.readuntil(b"\n")).strip():
                        pass
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            response.body = b"".join(chunks)
        elif (length := response.header("content-length")) is not None:
            response.body = await reader.readexactly(int(length))
        else:
            response.body = await reader.read()
            response.closed = True
        return response


async def request(
    method: str,
    host: str,
    port: int,
    target: str,
    *,
    host_header: str | None = None,
    headers: dict[str, str] | list[tuple[str, str]] | None = None,
    body: bytes = b"",
    timeout: float = 10.0,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> Response:
    """One request on a fresh connection, closed afterwards."""
    async with Connection(host, port, timeout, tls=tls, server_name=server_name) as conn:
        return await conn.request(method, target, host=host_header, headers=headers, body=body, close=True)


async def get(
    host: str,
    port: int,
    target: str,
    *,
    host_header: str | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> Response:
    return await request("GET", host, port, target, host_header=host_header, headers=headers, timeout=timeout)


async def wait_listening(port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
    """Until something accepts connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s") from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
        return
