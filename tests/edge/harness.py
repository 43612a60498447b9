"""In-memory xDS streams: the edge's protocol code (stream.py, sotw.py, delta.py) run against an
in-memory SnapshotSource and a recording StreamRegistry (xdsbus_edge/interfaces.py), with requests in
and responses out exactly as the protocol code sees them: request messages in, serialized responses
out. No NATS and no gRPC, so a rule of docs/xds-protocol.md is checked in milliseconds.

    source.put(cluster("a")); v = source.commit()     # a complete snapshot, version v
    proxy = harness.sotw()                            # a SotW ADS stream of proxy gw-1
    await proxy.request(CLUSTER); r = await proxy.recv()
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, NoReturn, Self

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from tests.edge.envoy_resources import TYPE_OF, name_of
from tests.edge.proxies import DeltaProxy, SotwProxy
from xdsbus.contract.resources import ResourceKey
from xdsbus.translate.resource_table import ResourceTable
from xdsbus_edge.delta import DeltaStream
from xdsbus_edge.scopes import DEFAULT_SCOPE
from xdsbus_edge.snapshot import CachedResource, Snapshot, next_snapshot
from xdsbus_edge.sotw import SotwStream
from xdsbus_edge.stream import XdsStream

FIRST_VERSION = 100


class Aborted(Exception):
    """The stream ended the RPC with an error status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details


class InMemorySource:
    """A SnapshotSource fed by hand: put and remove resources, `commit` makes the next version current,
    the way the ledger follower switches to a complete version (same `next_snapshot`)."""

    def __init__(self) -> None:
        self._tables: dict[str, ResourceTable] = {}
        self._versions: dict[str, int] = {}
        self._current: dict[str, Snapshot] = {}
        # Woken in the order they started watching, so tests can choose which stream goes first.
        self._watchers: dict[str, dict[Callable[[], None], None]] = {}

    def _table(self, scope: str) -> ResourceTable:
        return self._tables.setdefault(scope, ResourceTable())

    def put(self, *messages: Any, scope: str = DEFAULT_SCOPE) -> Self:
        table = self._table(scope)
        for m in messages:
            table.put(TYPE_OF[type(m)], name_of(m), m.SerializeToString(deterministic=True))
        return self

    def remove(self, type_url: str, name: str, scope: str = DEFAULT_SCOPE) -> Self:
        self._table(scope).remove(type_url, name)
        return self

    def sha(self, type_url: str, name: str, scope: str = DEFAULT_SCOPE) -> str:
        res = self._table(scope).get(type_url, name)
        assert res is not None
        return res.sha256

    def commit(self, scope: str = DEFAULT_SCOPE) -> int:
        """Make the changes since the last commit the scope's next version; its number."""
        table = self._table(scope)
        changes = table.commit()
        version = self._versions.get(scope, FIRST_VERSION - 1) + 1
        self._versions[scope] = version
        updates: dict[ResourceKey, CachedResource | None] = {
            key: CachedResource(key.type_url, key.name, res.sha256, res.body) for key, res in changes.changed
        }
        updates.update((key, None) for key in changes.removed)
        self._current[scope] = next_snapshot(
            self._current.get(scope), scope=scope, version=version, digest=table.digest(), changes=updates
        )
        for wake in list(self._watchers.get(scope, ())):
            wake()
        return version

    # ---- SnapshotSource -------------------------------------------------------------------------

    def current(self, scope: str) -> Snapshot | None:
        return self._current.get(scope)

    async def first_snapshot(self, scope: str) -> Snapshot | None:
        return self._current.get(scope)

    def watch(self, scope: str, wake: Callable[[], None]) -> None:
        self._watchers.setdefault(scope, {})[wake] = None

    def unwatch(self, scope: str, wake: Callable[[], None]) -> None:
        self._watchers.get(scope, {}).pop(wake, None)

    def watchers(self, scope: str = DEFAULT_SCOPE) -> int:
        return len(self._watchers.get(scope, ()))


class RecordingRegistry:
    """A StreamRegistry that keeps the streams and writes down every report."""

    def __init__(self) -> None:
        self.streams: list[XdsStream] = []
        # (proxy, reason), (proxy, type_url, size), (proxy, type_url, version, error), ...
        self.refusals: list[tuple[str, str]] = []
        self.responses: list[tuple[str, str, int]] = []
        self.nacks: list[tuple[str, str, str, str]] = []
        self.expired: list[tuple[str, str]] = []
        self.convergences: list[tuple[str, float]] = []

    def register(self, stream: XdsStream) -> None:
        self.streams.append(stream)

    def unregister(self, stream: XdsStream) -> None:
        self.streams.remove(stream)

    def streams_of(self, node_id: str) -> Iterable[XdsStream]:
        return [s for s in self.streams if s.node_id == node_id]

    def refused(self, stream: XdsStream, reason: str) -> None:
        self.refusals.append((stream.node_id, reason))

    def responded(self, stream: XdsStream, type_url: str, size: int, seconds: float) -> None:
        self.responses.append((stream.node_id, type_url, size))

    def nacked(self, stream: XdsStream, type_url: str, version: str, error: str) -> None:
        self.nacks.append((stream.node_id, type_url, version, error))

    def expired_nonce(self, stream: XdsStream, type_url: str) -> None:
        self.expired.append((stream.node_id, type_url))

    def converged(self, stream: XdsStream, seconds: float) -> None:
        self.convergences.append((stream.node_id, seconds))


class MemoryLink:
    """One stream run as a task of this event loop. It is the stream's Transport (responses are the
    bytes the protocol code writes, parsed back) and the proxy's Link (requests are handed over as
    fresh messages, as gRPC would deliver them).

    `send` returns once the stream has handled the request (or ended): a test's steps happen in the
    order written, and a race (a push overtaking an ACK) happens only when a test builds it."""

    def __init__(self, response_class: Any) -> None:
        self.response_class = response_class
        self._requests: asyncio.Queue[Any] = asyncio.Queue()
        self._responses: asyncio.Queue[Any] = asyncio.Queue()
        # One future per request sent and not yet handled, oldest first (requests are handled in order).
        self._pending: collections.deque[asyncio.Future[None]] = collections.deque()

    def start(self, stream: XdsStream) -> None:
        """Run `stream` (built with this link as its transport)."""
        self.stream = stream
        handle = stream.handle_request

        async def handle_and_tell(request: Any) -> None:
            try:
                await handle(request)
            finally:
                self._pending.popleft().set_result(None)

        stream.handle_request = handle_and_tell  # type: ignore[method-assign]
        self.task = asyncio.create_task(stream.run(self._incoming()), name=f"memory-stream-{stream.id}")

    async def _incoming(self) -> AsyncIterator[Any]:
        while (request := await self._requests.get()) is not None:
            yield request

    # ---- Transport --------------------------------------------------------------------------------

    def peer(self) -> str:
        return "memory"

    async def write(self, message: bytes) -> None:
        self._responses.put_nowait(self.response_class.FromString(message))

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        raise Aborted(code, details)

    # ---- Link ---------------------------------------------------------------------------------------

    async def send(self, request: Any) -> None:
        handled = asyncio.get_running_loop().create_future()
        self._pending.append(handled)
        # As gRPC hands them over: SotW requests as their bytes (the stream parses them), delta ones parsed.
        data = request.SerializeToString()
        self._requests.put_nowait(data if self.stream.mode == "sotw" else type(request).FromString(data))
        await asyncio.wait({handled, self.task}, return_when=asyncio.FIRST_COMPLETED)

    async def read(self, timeout: float) -> Any | None:
        if not self._responses.empty():
            return self._responses.get_nowait()
        getter = asyncio.ensure_future(self._responses.get())
        done, _ = await asyncio.wait(
            {getter, self.task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            return getter.result()
        getter.cancel()
        if self.task in done:
            return None
        raise TimeoutError(f"no response within {timeout} s")

    async def status(self, timeout: float) -> grpc.StatusCode:
        try:
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        except Aborted as aborted:
            return aborted.code
        return grpc.StatusCode.OK

    async def close(self) -> None:
        self._requests.put_nowait(None)
        with contextlib.suppress(Aborted):
            await self.task


class Harness:
    """An in-memory source and registry, and the streams opened on them."""

    def __init__(self, registry: Any = None) -> None:
        self.source = InMemorySource()
        # A RecordingRegistry, or the edge's own StreamTable to test it behind in-memory streams.
        self.registry = registry if registry is not None else RecordingRegistry()
        self._links: list[MemoryLink] = []

    def _open(self, stream_class: type[XdsStream], type_url: str | None, response_class: Any) -> MemoryLink:
        rpc = f"{stream_class.mode}:{type_url or 'ADS'}"
        link = MemoryLink(response_class)
        link.start(stream_class(self.source, self.registry, rpc, type_url, link))
        self._links.append(link)
        return link

    def sotw(self, node_id: str = "gw-1", scope: str | None = None, type_url: str | None = None) -> SotwProxy:
        """A SotW stream (ADS, or the per-type RPC of `type_url`)."""
        link = self._open(SotwStream, type_url, discovery_pb2.DiscoveryResponse)
        return SotwProxy(link, node_id, scope, type_url)

    def delta(
        self, node_id: str = "gw-1", scope: str | None = None, type_url: str | None = None
    ) -> DeltaProxy:
        """A delta stream (ADS, or the per-type RPC of `type_url`)."""
        link = self._open(DeltaStream, type_url, discovery_pb2.DeltaDiscoveryResponse)
        return DeltaProxy(link, node_id, scope, type_url)

    def sync(self, proxy: SotwProxy | DeltaProxy) -> dict[str, Any]:
        """What /debug/syncz shows for the proxy's stream, per short type name."""
        link = proxy.link
        assert isinstance(link, MemoryLink)
        return dict(link.stream.debug()["types"])

    async def close(self) -> None:
        """End every stream; a stream that failed (other than by refusing) fails the test."""
        for link in self._links:
            await link.close()
