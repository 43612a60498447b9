"""What every xDS stream does, SotW or delta, aggregated or per type.

One task per stream reads requests into a queue; the stream's own task takes requests, snapshot
wake-ups and "EDS after CDS" notices from that queue in order and is the only one that writes. The
stream holds the snapshot it last pushed (`snap`) and answers requests from it, so within one stream
every type moves from one version to the next together and in order (CDS, EDS, LDS, RDS, SDS).

A stream knows the rest of the edge only through interfaces.py: the snapshot source it serves from,
the registry it reports to, and the transport of its RPC.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar

import grpc
from envoy.config.core.v3 import base_pb2
from google.protobuf.message import DecodeError

from xdsbus.contract.type_urls import ENDPOINT
from xdsbus_edge.interfaces import ScopeRefused, SnapshotSource, StreamRegistry, Transport
from xdsbus_edge.limits import StreamLimits
from xdsbus_edge.scopes import SCOPE_METADATA_KEY, SCOPE_PATTERN, scope_of
from xdsbus_edge.snapshot import FULL_STATE_TYPES, Snapshot, short_type, type_rank
from xdsbus_edge.subscriptions import MAX_NAMES_PER_TYPE, Watch

log = logging.getLogger(__name__)
# The longest NACK error text kept and logged (Envoy's own messages are far shorter).
MAX_NACK_ERROR_CHARS = 8192

# Distinct type URLs one stream may ask for: Envoy uses fewer than ten, and each costs a watch kept for
# the stream's life, so random type URLs must not grow a stream without bound (tests/fuzz).
MAX_TYPES_PER_STREAM = 16

_ids = itertools.count(1)


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


WAKE = _Signal("WAKE")
EDS_AFTER_CDS = _Signal("EDS_AFTER_CDS")
EOF = _Signal("EOF")
FLOODED = _Signal("FLOODED")

# Framing bytes per resource on top of its body, for a reservation (limits.ByteBudget): a SotW entry's
# tag and length; a delta Resource's heads, version (the hex digest) and a name.
_SOTW_OVERHEAD = 6
_DELTA_OVERHEAD = 160


class StreamRefused(Exception):
    def __init__(self, code: grpc.StatusCode, details: str, reason: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.reason = reason


class XdsStream:
    """Base of SotwStream and DeltaStream."""

    mode: ClassVar[str] = ""

    def __init__(
        self,
        source: SnapshotSource,
        registry: StreamRegistry,
        rpc: str,
        fixed_type: str | None,
        transport: Transport,
        limits: StreamLimits | None = None,
    ) -> None:
        self.id = next(_ids)
        self.source = source
        self.registry = registry
        self.rpc = rpc
        self.fixed_type = fixed_type
        self.transport = transport
        self.peer = transport.peer()
        self.node: base_pb2.Node | None = None
        self.node_id = ""
        self.scope = ""
        self.snap: Snapshot | None = None
        self.watches: dict[str, Watch] = {}
        self._ordered: list[Watch] = []
        self.connected_at = time.time()
        # Requests, snapshot wake-ups and notices; the requests among them are counted and bounded.
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.limits = limits if limits is not None else StreamLimits()
        self._requests_queued = 0
        self._registered = False
        self._wake_queued = False
        self._nonces = itertools.count(1)
        # Convergence: when the push in flight started, and the types still waiting for their ACK.
        self._converging: tuple[float, set[str]] | None = None

    # ---- lifecycle ----------------------------------------------------------------------------

    async def run(self, requests: AsyncIterator[Any]) -> None:
        """Serve the stream until the proxy ends it; end it with an error status when it cannot be
        served (StreamRefused)."""
        gate = self.limits.gate
        if not gate.enter():
            self.registry.refused(self, "too_many_streams")
            log.warning("refusing %s stream from %s: %d streams open", self.rpc, self.peer, gate.open)
            await self.transport.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this edge serves at most {gate.maximum} streams at once; try another replica",
            )
        try:
            await self._run(requests)
        finally:
            gate.leave()

    async def _run(self, requests: AsyncIterator[Any]) -> None:
        reader = asyncio.create_task(self._read(requests), name=f"xds-read-{self.id}")
        try:
            await self._serve()
        except StreamRefused as refused:
            self.registry.refused(self, refused.reason)
            log.info("refusing %s stream from %s: %s", self.rpc, self.node_id or self.peer, refused.details)
            await self.transport.abort(refused.code, refused.details)
        except (grpc.aio.AbortError, grpc.RpcError):
            raise
        except Exception:
            log.exception("%s stream %d of proxy %s failed", self.rpc, self.id, self.node_id or self.peer)
            raise
        finally:
            reader.cancel()
            if self._registered:
                self.source.unwatch(self.scope, self._wake)
                self.registry.unregister(self)

    async def _next(self) -> Any:
        item = await self.queue.get()
        if item is FLOODED:
            raise StreamRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {self.limits.limits.max_queued_requests} requests waiting on this stream "
                "(a proxy sends one per response)",
                "request_flood",
            )
        if not isinstance(item, (_Signal, BaseException)):
            self._requests_queued -= 1
        return item

    async def _serve(self) -> None:
        budget = self.limits.budget
        first = await self._next()
        if first is EOF:
            return
        if isinstance(first, BaseException):
            raise first
        first = self.decode(first)
        await self._open(first)
        self.registry.register(self)
        self._registered = True
        self.source.watch(self.scope, self._wake)
        if self.source.current(self.scope) is not self.snap:
            self._wake()
        async with budget.reserve(self._request_bytes(first)):
            await self.handle_request(first)
        self._check_names()
        while True:
            item = await self._next()
            if item is EOF:
                return
            if item is WAKE:
                self._wake_queued = False
                snap = self.source.current(self.scope)
                if snap is not None and snap is not self.snap:
                    async with budget.reserve(self._push_bytes(snap)):
                        await self.push(snap)
            elif item is EDS_AFTER_CDS:
                async with budget.reserve(self._type_bytes(self.snap, ENDPOINT)):
                    await self.eds_after_cds()
            elif isinstance(item, BaseException):
                raise item
            else:
                item = self.decode(item)
                async with budget.reserve(self._request_bytes(item)):
                    await self.handle_request(item)
                self._check_names()

    def _check_names(self) -> None:
        """Refuse a stream whose subscriptions outgrew the cap (delta subscriptions add up)."""
        if any(len(watch.names) > MAX_NAMES_PER_TYPE for watch in self.watches.values()):
            raise StreamRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"more than {MAX_NAMES_PER_TYPE} resource names subscribed for one type",
                "too_many_names",
            )

    async def _read(self, requests: AsyncIterator[Any]) -> None:
        limit = self.limits.limits.max_queued_requests
        try:
            async for request in requests:
                if self._requests_queued >= limit:
                    # Cut off ahead of what is queued; the rest stays unread in gRPC's flow-controlled
                    # buffers.
                    self.queue._queue.appendleft(FLOODED)  # type: ignore[attr-defined]
                    self.queue.put_nowait(EOF)
                    return
                self._requests_queued += 1
                self.queue.put_nowait(request)
        except asyncio.CancelledError:
            raise
        except DecodeError as exc:  # gRPC's deserializer: bytes that are not a request (tests/fuzz)
            self.queue.put_nowait(
                StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, f"undecodable request: {exc}", "bad_request")
            )
            return
        except Exception as exc:  # the RPC failed under us: let the stream's task end
            self.queue.put_nowait(exc)
            return
        self.queue.put_nowait(EOF)

    # ---- response bytes reserved before they are built (limits.ByteBudget) ----------------------

    def _type_bytes(self, snap: Snapshot | None, type_url: str) -> int:
        """What a response carrying every resource of a type of `snap` takes."""
        if snap is None:
            return 0
        overhead = _SOTW_OVERHEAD if self.mode == "sotw" else _DELTA_OVERHEAD
        return snap.size_bytes(type_url) + overhead * len(snap.of(type_url))

    def _request_bytes(self, request: Any) -> int:
        """At most what answering `request` sends: the whole type for a first request, one without a
        nonce or one that changes the subscription; nothing for a NACK or an ACK that keeps it (an ACK
        naming as many resources as subscribed is taken to keep them)."""
        type_url = request.type_url or self.fixed_type
        if not type_url or request.HasField("error_detail"):
            return 0
        watch = self.watches.get(type_url)
        if watch is not None and request.response_nonce:
            if self.mode == "sotw":
                named = len(watch.names) + (1 if watch.wildcard and watch.explicit else 0)
                if len(request.resource_names) == named:
                    return 0
            elif not request.resource_names_subscribe:
                return 0
        return self._type_bytes(self.snap, type_url)

    def _push_bytes(self, snap: Snapshot) -> int:
        """At most what a push of `snap` sends: per watched type, everything when the watch is not on
        `snap`'s predecessor, must resend its endpoints, or is sent whole (CDS, LDS); otherwise the
        changed resources."""
        total = 0
        resources_of = snap.of
        for type_url, watch in self.watches.items():
            changed = snap.changed.get(type_url)
            base = watch.base
            if base is None or base.version != snap.predecessor or getattr(watch, "always_respond", False):
                total += self._type_bytes(snap, type_url)
            elif changed:
                if type_url in FULL_STATE_TYPES:
                    total += self._type_bytes(snap, type_url)
                else:
                    resources = resources_of(type_url)
                    overhead = _SOTW_OVERHEAD if self.mode == "sotw" else _DELTA_OVERHEAD
                    total += sum(r.size + overhead for n in changed if (r := resources.get(n)) is not None)
        return total

    def _wake(self) -> None:
        if not self._wake_queued:
            self._wake_queued = True
            self.queue.put_nowait(WAKE)

    async def _open(self, first: Any) -> None:
        """Take node and scope from the first request and the scope's snapshot; refuse the stream when
        there is no complete snapshot to serve."""
        if not first.HasField("node") or not first.node.id:
            raise StreamRefused(grpc.StatusCode.INVALID_ARGUMENT, "missing node information", "no_node")
        self.node = first.node
        self.node_id = first.node.id
        scope = scope_of(first.node)
        if not SCOPE_PATTERN.match(scope):
            raise StreamRefused(
                grpc.StatusCode.INVALID_ARGUMENT, f"invalid {SCOPE_METADATA_KEY} {scope!r}", "bad_scope"
            )
        self.scope = scope
        try:
            snap = await self.source.first_snapshot(scope)
        except ScopeRefused as refused:
            raise StreamRefused(refused.code, refused.details, refused.reason) from None
        if snap is None:
            raise StreamRefused(
                grpc.StatusCode.UNAVAILABLE,
                f"server is not ready: no complete configuration for scope {scope!r} yet",
                "not_ready",
            )
        self.snap = snap

    def type_of(self, request_type: str) -> str:
        """The type a request is about; raises StreamRefused for a missing or foreign type URL, or one
        type too many."""
        if self.fixed_type is None:
            if not request_type:
                raise StreamRefused(
                    grpc.StatusCode.INVALID_ARGUMENT, "type_url is required on ADS", "no_type"
                )
            if request_type not in self.watches and len(self.watches) >= MAX_TYPES_PER_STREAM:
                raise StreamRefused(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"more than {MAX_TYPES_PER_STREAM} resource types on one stream",
                    "too_many_types",
                )
            return request_type
        if request_type and request_type != self.fixed_type:
            raise StreamRefused(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"type_url {request_type!r} on a {short_type(self.fixed_type).upper()} stream",
                "wrong_type",
            )
        return self.fixed_type

    # ---- to implement -------------------------------------------------------------------------

    def decode(self, request: Any) -> Any:
        """A request as the RPC delivered it, as `handle_request` takes it (here: as it is)."""
        return request

    async def handle_request(self, request: Any) -> None:
        raise NotImplementedError

    async def push(self, snap: Snapshot) -> None:
        """Bring every watched type up to `snap`, in push order."""
        raise NotImplementedError

    async def eds_after_cds(self) -> None:
        """Another stream of this proxy sent clusters: make sure their endpoints follow."""
        raise NotImplementedError

    def cds_sent_elsewhere(self, eds_names: set[str]) -> None:
        raise NotImplementedError

    # ---- shared helpers ---------------------------------------------------------------------------

    def ordered_watches(self) -> list[Watch]:
        """The watches in push order (do not modify the list)."""
        # Watches are only ever added: the order changes when their number does.
        ordered = self._ordered
        if len(ordered) != len(self.watches):
            ordered = self._ordered = [self.watches[t] for t in sorted(self.watches, key=type_rank)]
        return ordered

    def next_nonce(self) -> str:
        return str(next(self._nonces))

    async def write(self, watch: Watch, body: bytes, nonce: str, started: float) -> None:
        """Send one response and account for it."""
        assert self.snap is not None
        watch.sent(nonce, self.snap.version_info)
        # A proxy that stops reading holds its share of --max-response-bytes: not for longer.
        deadlines = self.limits.writes
        task = deadlines.enter()
        try:
            await self.transport.write(body)
        except asyncio.CancelledError:
            if not deadlines.expired(task):
                raise
            raise StreamRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a {watch.short.upper()} response of {len(body)} bytes was not read within "
                f"{deadlines.timeout:g} s",
                "slow_reader",
            ) from None
        finally:
            deadlines.leave(task)
        self.registry.responded(self, watch.type_url, len(body), time.perf_counter() - started)

    def after_cds(self, eds_names: Callable[[], set[str]]) -> None:
        """Clusters were just sent on this stream: tell this proxy's other streams that carry EDS
        (per-type streams: CDS and EDS on separate streams of one proxy)."""
        names: set[str] | None = None
        for other in self.registry.streams_of(self.node_id):
            if other is not self and other.scope == self.scope and ENDPOINT in other.watches:
                if names is None:
                    names = eds_names()
                other.cds_sent_elsewhere(names)

    def record_ack(self, watch: Watch, nonce: str, version: str) -> None:
        watch.acked(nonce, version)
        if self._converging is not None and nonce == watch.nonce_sent:
            started, waiting = self._converging
            waiting.discard(watch.type_url)
            if not waiting:
                self.registry.converged(self, time.monotonic() - started)
                self._converging = None

    def record_nack(self, watch: Watch | None, type_url: str, nonce: str, error: str) -> None:
        """Keep a NACK's error on the watch (one log line per new version or error) and report it."""
        if len(error) > MAX_NACK_ERROR_CHARS:
            # A proxy's error text is kept per watch, shown in debug pages and logged: bounded, so a
            # client cannot make each NACK cost the whole request size in memory and in log lines.
            cut = len(error) - MAX_NACK_ERROR_CHARS
            error = f"{error[:MAX_NACK_ERROR_CHARS]}... ({cut} more characters)"
        self._converging = None
        if watch is None:
            self.registry.nacked(self, type_url, "unknown", error)
            return
        version = watch.version_of(nonce) or (watch.version_sent if not nonce else "") or "unknown"
        first_time = watch.version_nacked != version or watch.last_error != error
        watch.nacked(version, error)
        self.registry.nacked(self, type_url, version, error)
        if first_time:
            log.warning(
                "proxy %s rejected %s version %s: %s",
                self.node_id,
                watch.short.upper(),
                version,
                error,
                extra={"proxy": self.node_id, "type": watch.short, "version": version, "scope": self.scope},
            )

    def push_started(self, snap: Snapshot, types: set[str]) -> None:
        if not types:
            return
        if self._converging is None:
            self._converging = (snap.loaded_at, set(types))
        else:
            self._converging[1].update(types)

    def debug(self) -> dict[str, Any]:
        return {
            "proxy": self.node_id,
            "stream": self.id,
            "peer": self.peer,
            "scope": self.scope,
            "rpc": self.rpc,
            "mode": self.mode,
            "connected_at": self.connected_at,
            "snapshot": self.snap.version if self.snap else None,
            "types": {w.short: w.debug() for w in self.ordered_watches()},
        }
