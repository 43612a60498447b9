"""KV xdsbus_proxies, read and written only here: each edge's proxies' sync state (docs/proxy-status.md),
and how a type's state reads against the scope's ledger head (SYNCED, STALE, NACKED).

Edges write their own proxies' entries (`xdsbus_proxies` has a bucket TTL, so the entries of an edge that
died age out); `xdsbus proxy-status`, `proxy-config` and the console read them."""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Awaitable, Iterable
from typing import TypeVar

import msgspec
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from xdsbus import kv_listing
from xdsbus.bus import Bus
from xdsbus.contract.proxy_status import ProxyStatus, TypeSync
from xdsbus.layout import PROXIES_BUCKET

_SUBJECT_PREFIX = f"$KV.{PROXIES_BUCKET}."
# Entries written or read at once; more wait for the previous ones.
_CONCURRENCY = 64

T = TypeVar("T")


class SyncState(enum.StrEnum):
    """A type's state as `istioctl proxy-status` names it."""

    SYNCED = "SYNCED"
    STALE = "STALE"
    NACKED = "NACKED"
    NOT_SENT = "NOT SENT"


def sync_state(sync: TypeSync | None, head: int) -> SyncState:
    """How a type of a proxy stands against the scope's ledger head `head` (0: unknown). NACKED while the
    proxy's last answer was a NACK (until it ACKs a later version); STALE while a response awaits its
    answer or the proxy's view of the type is older than the head; else SYNCED."""
    if sync is None or not sync.sent:
        return SyncState.NOT_SENT
    if sync.nacked and sync.nacked_at >= sync.acked_at and not sync.pending:
        return SyncState.NACKED
    if sync.pending or (head and sync.current < head):
        return SyncState.STALE
    return SyncState.SYNCED


async def bucket(bus: Bus) -> KeyValue:
    """The handle on xdsbus_proxies (checked present by `bus.connect`)."""
    return await bus.js.key_value(PROXIES_BUCKET)


def encode(status: ProxyStatus) -> bytes:
    """An entry's value."""
    return msgspec.json.encode(status)


async def put_all(bus: Bus, entries: Iterable[tuple[str, bytes]], timeout: float = 10.0) -> None:
    """Write (key, value) entries; raises TimeoutError when NATS has not stored them all within `timeout`
    seconds.

    All but the last go as plain publishes to the bucket's subjects, the last as a JetStream publish whose
    ack answers for them all: the stream stores one connection's messages in order, so once the last is
    stored, so are the others (a refusal, as a permission the edge lacks, refuses the last too). An ack
    per entry cost six times the CPU (about 23 ms against 4 ms per 1,000 entries), which an edge spends
    beside its xDS pushes."""
    listed = list(entries)
    if not listed:
        return
    async with asyncio.timeout(timeout):
        for key, value in listed[:-1]:
            await bus.nc.publish(_SUBJECT_PREFIX + key, value)
        key, value = listed[-1]
        await bus.js.publish(_SUBJECT_PREFIX + key, value, timeout=timeout)


async def delete_all(kv: KeyValue, keys: Iterable[str]) -> None:
    """Remove entries; a key that is not there is no error."""
    await _bounded(kv.delete(key) for key in keys)


async def read_all(bus: Bus) -> list[ProxyStatus]:
    """Every stored entry (an undecodable one is skipped), sorted by node id, then edge."""
    kv = await bucket(bus)
    # Keys come from the bucket stream's subjects, as in status_store (nats-py's keys() can end early).
    keys = await kv_listing.stored_keys(bus, PROXIES_BUCKET)
    values = await _bounded(_get(kv, key) for key in keys)
    found = [status for value in values if (status := _decode(value)) is not None]
    return sorted(found, key=lambda s: (s.node_id, s.edge))


async def _get(kv: KeyValue, key: str) -> bytes | None:
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:  # deleted (a proxy that went away), or aged out since the listing
        return None
    return entry.value


def _decode(value: bytes | None) -> ProxyStatus | None:
    if not value:
        return None
    try:
        return msgspec.json.decode(value, type=ProxyStatus)
    except msgspec.DecodeError:
        return None


async def _bounded(calls: Iterable[Awaitable[T]]) -> list[T]:
    """Await `calls` at most _CONCURRENCY at a time, in order; their results."""
    results: list[T] = []
    batch: list[Awaitable[T]] = []
    for call in calls:
        batch.append(call)
        if len(batch) >= _CONCURRENCY:
            results += await asyncio.gather(*batch)
            batch = []
    if batch:
        results += await asyncio.gather(*batch)
    return results
