"""A small gRPC backend for end-to-end tests, with no generated code: generic handlers over raw bytes.

backend = await GrpcBackend("grpc-a").start()
# /echo.Echo/Say answers b"<request>|<name>"; request metadata comes back as trailing metadata
# prefixed `echo-` (and the backend's name as `x-backend`).
await backend.stop()
"""

from __future__ import annotations

import grpc
from grpc import aio

from xdsbus_dev.harness.processes import free_port

SERVICE = "echo.Echo"
SAY = f"/{SERVICE}/Say"


def _identity(data: bytes) -> bytes:
    return data


class GrpcBackend:
    """A grpc.aio server on 127.0.0.1:<free port> serving `echo.Echo/Say` (and `echo.Echo/Other`)."""

    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.port = port or free_port()
        self.server: aio.Server | None = None
        self.calls: list[str] = []  # the methods served, in order

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _say(self, request: bytes, context: aio.ServicerContext) -> bytes:
        return await self._answer("Say", request, context)

    async def _other(self, request: bytes, context: aio.ServicerContext) -> bytes:
        return await self._answer("Other", request, context)

    async def _answer(self, method: str, request: bytes, context: aio.ServicerContext) -> bytes:
        self.calls.append(method)
        echoed = [
            (f"echo-{key}", value)
            for key, value in context.invocation_metadata() or ()
            if isinstance(value, str) and not key.startswith(":")
        ]
        await context.send_initial_metadata((("x-backend", self.name),))
        context.set_trailing_metadata(tuple(echoed))
        return request + b"|" + self.name.encode()

    async def start(self) -> GrpcBackend:
        server = aio.server()
        handlers = {
            name: grpc.unary_unary_rpc_method_handler(
                handler, request_deserializer=_identity, response_serializer=_identity
            )
            for name, handler in (("Say", self._say), ("Other", self._other))
        }
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
        bound = server.add_insecure_port(self.address)
        if bound != self.port:
            raise OSError(f"the gRPC backend could not bind {self.address}")
        await server.start()
        self.server = server
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop(grace=None)
            self.server = None


async def call(
    target: str,
    method: str,
    request: bytes,
    *,
    authority: str,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = 5.0,
) -> tuple[bytes, dict[str, str], dict[str, str]]:
    """One unary call over a fresh plaintext channel to `target` with `authority`: the reply, the
    initial metadata and the trailing metadata. Raises grpc.aio.AioRpcError on a non-OK status."""
    options = (("grpc.default_authority", authority),)
    async with aio.insecure_channel(target, options=options) as channel:
        stub = channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)
        rpc = stub(request, metadata=metadata, timeout=timeout)
        reply = await rpc
        initial = {k: v for k, v in (await rpc.initial_metadata()) or () if isinstance(v, str)}
        trailing = {k: v for k, v in (await rpc.trailing_metadata()) or () if isinstance(v, str)}
        return reply, initial, trailing
