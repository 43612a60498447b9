"""A TCP proxy for fault tests: put it between a client and a server, then make the link half-open.

`TcpProxy(target_port).start()` listens on a free loopback port (`port`, `url`) and forwards every
connection to `target_host:target_port`. `stall()` stops forwarding in both directions without closing
anything: each side's socket stays open and its bytes are held (as a silent network partition or a
dead peer behind a NAT does), so only a keepalive such as NATS pings can notice. `resume()` forwards
again, held bytes first; `cut()` closes every open connection (a reset link); `stop()` also stops
listening. New connections made while stalled are accepted and stalled too.

It runs its own event loop in a daemon thread, so that sync and async tests can use it alike, and a
test's own loop being busy does not stall it.

    with TcpProxy(nats.port) as proxy:
        connect(proxy.url) ...
        proxy.stall()      # half-open: the client's pings go unanswered
        ...
        proxy.resume()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

from xdsbus_dev.harness.processes import free_port

CHUNK = 65536


class TcpProxy:
    """Forwards `127.0.0.1:port` to `target_host:target_port` until stalled, cut or stopped (see the
    module)."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1", port: int | None = None) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = port or free_port()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy", daemon=True)
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        """`nats://127.0.0.1:<port>`, for a NATS client to connect through the proxy."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def stalled(self) -> bool:
        """Whether forwarding is stopped."""
        return self._flowing is not None and not self._flowing.is_set()

    def start(self) -> TcpProxy:
        """Listen and forward; returns self."""
        self._thread.start()
        self._run(self._listen())
        return self

    def stall(self) -> None:
        """Stop forwarding without closing: every connection becomes half-open."""
        self._run(self._set_flowing(False))

    def resume(self) -> None:
        """Forward again, bytes held while stalled first."""
        self._run(self._set_flowing(True))

    def cut(self) -> None:
        """Close every open connection (both sides see the link drop); keep listening."""
        self._run(self._close_connections())

    def stop(self) -> None:
        """Close every connection, stop listening and end the proxy's thread."""
        if not self._thread.is_alive():
            return
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, work: object) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(timeout=10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _close_connections(self) -> None:
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        await self._close_connections()
        if self._flowing is not None:
            # Held pumps wake, find their sockets closed, and end.
            self._flowing.set()

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            server_reader, server_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        await asyncio.gather(
            self._pump(client_reader, server_writer, client_writer),
            self._pump(server_reader, client_writer, server_writer),
        )

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, other: asyncio.StreamWriter
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(CHUNK)
                if not data:
                    break
                # A read that was under way when the link stalled is held, not delivered.
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except (OSError, RuntimeError):
            pass
        finally:
            for end in (writer, other):
                self._writers.discard(end)
                with contextlib.suppress(OSError, RuntimeError):
                    end.close()
