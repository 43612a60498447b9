"""Publishing this edge's proxies' sync state to KV xdsbus_proxies (docs/proxy-status.md), from the same
stream state /debug/syncz shows.

NATS traffic does not follow xDS traffic: once per `interval` the publisher looks at every proxy's
streams, and writes the entries of the proxies whose state moved since their last write (a cheap
fingerprint of nonces, versions and subscription sizes tells), plus those last written a third of the
bucket TTL ago, so live entries never age out. A proxy whose streams all ended is deleted at the next
look. At 1,000 proxies a version pushed to all of them costs one write per proxy, whatever the number of
responses and ACKs it took. On stop, every entry this edge wrote is deleted.

xDS goes first: a look waits, before it starts and between slices of proxies, until no response is being
built or written (the edge's ByteBudget drained), at most `interval` per look. Writing 1,000 entries
takes the edge about 60 ms of CPU, which a push to those proxies would otherwise share
(bench/edge_fanout_1000.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import heapq
import logging
import time
import weakref
from collections.abc import Hashable, Sequence
from collections.abc import Set as AbstractSet

from nats.errors import Error as NatsError
from nats.js.kv import KeyValue

from xdsbus import proxy_store
from xdsbus.bus import Bus
from xdsbus.contract.proxy_status import (
    MAX_NAMES,
    ProxyStatus,
    TypeSync,
    cap_error,
    cap_id,
    listed_names,
    proxy_key,
)
from xdsbus.contract.type_urls import TYPE_ORDER
from xdsbus_edge.limits import ByteBudget
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.registry import StreamTable
from xdsbus_edge.snapshot import type_rank
from xdsbus_edge.stream import XdsStream
from xdsbus_edge.subscriptions import WILDCARD, Watch

log = logging.getLogger(__name__)

# Seconds between looks at the streams: at most one write per proxy per look.
DEFAULT_INTERVAL = 1.0
# Proxies looked at between two yields to the event loop.
_YIELD_EVERY = 50
# Seconds a stop may spend deleting this edge's entries (the TTL removes what it could not).
_STOP_TIMEOUT = 3.0


# The listed names of the SotW subscriptions in use: one interned frozenset is shared by every proxy
# naming the same resources (subscriptions.intern_names), so its names are sorted once, not per write.
_listed_of: weakref.WeakKeyDictionary[frozenset[str], list[str]] = weakref.WeakKeyDictionary()


def _listed(names: AbstractSet[str]) -> list[str]:
    """The first names of a subscription, in order, within the entry's bounds (never modify it)."""
    shared = names if isinstance(names, frozenset) else None
    if shared is not None:
        listed = _listed_of.get(shared)
        if listed is not None:
            return listed
    listed = listed_names(sorted(names) if len(names) <= MAX_NAMES else heapq.nsmallest(MAX_NAMES, names))
    if shared is not None:
        _listed_of[shared] = listed
    return listed


def type_sync(watch: Watch) -> TypeSync:
    """One watch's state as published: versions, the error (capped), and the subscribed names (the
    first ones in order, within the entry's bounds; the count says how many)."""
    names = watch.names
    listed = _listed(names)
    if watch.wildcard:
        listed = [WILDCARD, *listed]
    answered = watch.nacked_at is not None and watch.sent_at is not None and watch.nacked_at >= watch.sent_at
    return TypeSync(
        type_url=watch.type_url,
        sent=watch.version_sent,
        acked=watch.version_acked,
        nacked=watch.version_nacked,
        error=cap_error(watch.last_error),
        current=watch.base.version if watch.base is not None else 0,
        pending=bool(watch.nonce_sent) and watch.nonce_acked != watch.nonce_sent and not answered,
        sent_at=watch.sent_at or 0.0,
        acked_at=watch.acked_at or 0.0,
        nacked_at=watch.nacked_at or 0.0,
        wildcard=watch.wildcard,
        subscribed=listed,
        subscribed_count=len(names),
    )


def _fingerprint(streams: Sequence[XdsStream]) -> Hashable:
    """What changes whenever a proxy's published state would (subscription names aside, whose count
    stands for them)."""
    return tuple(
        (
            s.id,
            s.scope,
            s.snap.version if s.snap is not None else 0,
            tuple(
                (
                    w.type_url,
                    w.nonce_sent,
                    w.nonce_acked,
                    w.version_acked,
                    w.nacked_at,
                    w.base.version if w.base is not None else 0,
                    len(w.names),
                    w.wildcard,
                )
                for w in s.watches.values()
            ),
        )
        for s in streams
    )


def proxy_status(edge_id: str, streams: Sequence[XdsStream]) -> ProxyStatus:
    """The entry of one proxy from its streams on this edge (one for ADS, one per type otherwise; a
    type served by two streams, as during a reconnect, is taken from the newer)."""
    newest = max(streams, key=lambda s: s.id)
    watches: dict[str, Watch] = {}
    for stream in sorted(streams, key=lambda s: s.id):
        # The xDS types only: a type URL nothing serves (a client's typo, tests/fuzz) has no state to show.
        watches.update((t, w) for t, w in stream.watches.items() if t in TYPE_ORDER)
    node = newest.node
    return ProxyStatus(
        node_id=cap_id(newest.node_id),
        scope=newest.scope,
        edge=edge_id,
        connected_at=min(s.connected_at for s in streams),
        updated_at=time.time(),
        version=max((s.snap.version for s in streams if s.snap is not None), default=0),
        mode=newest.mode,
        rpcs=sorted({s.rpc for s in streams}),
        cluster=cap_id(node.cluster) if node is not None else "",
        peer=cap_id(newest.peer),
        types=[type_sync(watches[t]) for t in sorted(watches, key=type_rank)],
    )


@dataclasses.dataclass
class _Written:
    key: str
    fingerprint: Hashable
    at: float


class ProxyStatusPublisher:
    """Keeps KV xdsbus_proxies in step with this edge's streams (see the module's docstring)."""

    def __init__(
        self,
        streams: StreamTable,
        bus: Bus,
        kv: KeyValue,
        edge_id: str,
        *,
        ttl: float,
        interval: float = DEFAULT_INTERVAL,
        metrics: EdgeMetrics | None = None,
        responses: ByteBudget | None = None,
    ) -> None:
        self.streams = streams
        self.bus = bus
        self.kv = kv
        self.edge_id = edge_id
        self.interval = interval
        self.metrics = metrics
        # The response bytes the edge's streams have reserved: a look waits for them (module docstring).
        self.responses = responses
        # Rewrite live entries well before the bucket TTL removes them; a bucket without TTL: every minute.
        self.refresh = ttl / 3 if ttl > 0 else 60.0
        self._written: dict[str, _Written] = {}
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    def start(self) -> None:
        """Start looking every `interval`."""
        self._task = asyncio.create_task(self._run(), name="proxy-status")

    async def stop(self) -> None:
        """Stop looking and delete every entry this edge wrote (streams have ended by now)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        keys = [w.key for w in self._written.values()]
        self._written.clear()
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                await proxy_store.delete_all(self.kv, keys)
        except (TimeoutError, NatsError, OSError) as exc:
            log.warning("proxy status: %d entries left to the bucket TTL (%s)", len(keys), exc)

    async def _run(self) -> None:
        while True:
            try:
                await self.flush()
                if self._failing:
                    log.info("proxy status: writing to NATS again")
                self._failing = False
            except (NatsError, OSError, TimeoutError) as exc:
                # Kept as unwritten: the next look writes them again.
                if self.metrics is not None:
                    self.metrics.proxy_status_failures.inc()
                if not self._failing:
                    log.warning("proxy status: cannot write to NATS (%s); trying again", exc)
                self._failing = True
            await asyncio.sleep(self.interval)

    async def _after_responses(self, deadline: float) -> None:
        """Wait until no response is being built or written, or until `deadline` (time.monotonic())."""
        responses = self.responses
        if responses is None or not responses.used:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await responses.drained()

    async def flush(self) -> int:
        """Write the entries that changed or are due for a refresh, delete those of proxies gone; the
        number of writes and deletes."""
        now = time.monotonic()
        await self._after_responses(now + self.interval)
        by_node: dict[str, list[XdsStream]] = {}
        for stream in self.streams.streams():
            if isinstance(stream, XdsStream):
                by_node.setdefault(stream.node_id, []).append(stream)
        puts: list[tuple[str, bytes]] = []
        written: list[tuple[str, _Written]] = []
        for looked, (node_id, streams) in enumerate(by_node.items(), 1):
            if looked % _YIELD_EVERY == 0:
                # Let pushes and requests through between slices of a thousand proxies.
                await asyncio.sleep(0)
                await self._after_responses(now + self.interval)
            fingerprint = _fingerprint(streams)
            last = self._written.get(node_id)
            if last is not None and last.fingerprint == fingerprint and now - last.at < self.refresh:
                continue
            status = proxy_status(self.edge_id, streams)
            key = proxy_key(node_id, self.edge_id)
            puts.append((key, proxy_store.encode(status)))
            written.append((node_id, _Written(key, fingerprint, now)))
        gone = [node_id for node_id in self._written if node_id not in by_node]
        await proxy_store.put_all(self.bus, puts)
        self._written.update(written)
        await proxy_store.delete_all(self.kv, [self._written[n].key for n in gone])
        for node_id in gone:
            del self._written[node_id]
        if self.metrics is not None:
            self.metrics.proxy_status_writes.inc("put", amount=len(puts))
            self.metrics.proxy_status_writes.inc("delete", amount=len(gone))
        return len(puts) + len(gone)
