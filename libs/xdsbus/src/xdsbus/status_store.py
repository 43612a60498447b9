"""KV xdsbus_status, read and written only here: what the builder decided about each object, and what
sources report about themselves (files, registries), readable by `xdsbus status`.

Every entry is an xdsbus.contract.status.ObjectStatus stored as JSON under
`status_key(kind, source, key)`, whoever writes it. Keeping the key per kind and source lets each writer
own its entries (a watcher writes the status of its own objects, the builder its verdicts), and the kind
as a subject token of its own lets a reader of a few kinds filter on the server (`watch`).

Entries written under the earlier layout `<kind>/<source>/<key>` are moved by `migrate_legacy_keys`,
which the builder runs when it starts leading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Collection, Iterable
from typing import Protocol

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from xdsbus import kv_listing
from xdsbus.bus import STATUS_BUCKET, Bus
from xdsbus.contract.status import (
    ObjectStatus,
    Verdict,
    is_legacy_status_key,
    status_key,
    status_kind_filter,
)

log = logging.getLogger(__name__)

_SUBJECT_PREFIX = f"$KV.{STATUS_BUCKET}."
# Status writes awaiting their acknowledgement at once (a cold start writes one per object).
_WINDOW = 2048


class StatusRef(Protocol):
    """What names a status entry (the fold's ObjectRef is one)."""

    @property
    def kind(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def key(self) -> str: ...


class RejectedEvent(Protocol):
    """An event the fold could not use (the fold's Rejection is one)."""

    @property
    def subject(self) -> str: ...
    @property
    def seq(self) -> int: ...
    @property
    def reason(self) -> str: ...


async def publish(bus: Bus, statuses: Iterable[ObjectStatus | StatusRef]) -> None:
    """Write changed statuses (a bare reference deletes the object's entry), pipelined."""
    acks = bus.acks()
    group = acks.group()
    for item in statuses:
        if not isinstance(item, ObjectStatus):
            await delete(bus, item.kind, item.source, item.key)
            continue
        subject = _SUBJECT_PREFIX + status_key(item.kind, item.source, item.key)
        await group.publish(subject, msgspec.json.encode(item))
        if len(group) >= _WINDOW:
            await group.acked()
            group = acks.group()
    await group.acked()


async def publish_rejections(bus: Bus, rejections: Iterable[RejectedEvent]) -> None:
    """Malformed events, named by their subject and sequence."""
    await publish(
        bus,
        (
            ObjectStatus(
                kind="Event", source=r.subject, key=str(r.seq), state=Verdict.REJECTED, reason=r.reason
            )
            for r in rejections
        ),
    )


async def put(bus: Bus, status: ObjectStatus) -> None:
    """Write one status and wait until it is stored."""
    await bus.status.put(status_key(status.kind, status.source, status.key), msgspec.json.encode(status))


async def delete(bus: Bus, kind: str, source: str, key: str) -> None:
    """Remove an object's status; nothing happens when it has none."""
    try:
        await bus.status.delete(status_key(kind, source, key))
    except KeyNotFoundError:
        pass


async def delete_legacy(bus: Bus, kv_prefix: str, source: str) -> None:
    """Remove the entries of `source` stored under an earlier key scheme: every KV key starting with
    `kv_prefix` whose record names `source` (the record decides, as in `read_source`)."""
    for key in await _keys(bus, kv_prefix):
        status = await _get(bus, key)
        if status is not None and status.source == source:
            await bus.status.delete(key)


async def read(bus: Bus, kind: str, source: str, key: str) -> ObjectStatus | None:
    """One object's status, or None when it has none (or its entry cannot be decoded)."""
    try:
        entry = await bus.status.get(status_key(kind, source, key))
    except KeyNotFoundError:
        return None
    return _decode(entry.value)


async def read_all(bus: Bus) -> list[ObjectStatus]:
    """Every status entry, sorted by kind, source and key."""
    out = [s for key in await _keys(bus, "") if (s := await _get(bus, key)) is not None]
    return sorted(out, key=lambda s: (s.kind, s.source, s.key))


async def read_source(bus: Bus, kind: str, source: str) -> list[ObjectStatus]:
    """The statuses of one kind written for one source (a watcher reloading its own entries)."""
    out = []
    for key in await _keys(bus, status_key(kind, source, ""), status_kind_filter(kind)):
        status = await _get(bus, key)
        # Keys are folded to KV's alphabet, so two sources could share a prefix: the record decides.
        if status is not None and status.kind == kind and status.source == source:
            out.append(status)
    return sorted(out, key=lambda s: s.key)


async def watch(bus: Bus, kinds: Collection[str], source: str) -> AsyncIterator[ObjectStatus]:
    """The statuses of these kinds of one source: every stored one, then each one written, until the
    caller stops iterating (deletions are not reported). A watch that fails raises here.

    One KV watch per kind, filtered on the server by the kind's token: the statuses of other kinds (a
    cold start writes one per object) never reach this process."""
    queue: asyncio.Queue[ObjectStatus | Exception] = asyncio.Queue()

    async def follow(kind: str) -> None:
        try:
            watcher = await bus.status.watch(status_kind_filter(kind), ignore_deletes=True)
            try:
                async for entry in watcher:
                    if entry is None or not entry.value:
                        continue
                    status = _decode(entry.value)
                    if status is not None and status.kind == kind and status.source == source:
                        queue.put_nowait(status)
            finally:
                await watcher.stop()
        except Exception as exc:
            queue.put_nowait(exc)

    tasks = [asyncio.create_task(follow(kind), name=f"status watch {kind}") for kind in sorted(kinds)]
    try:
        while True:
            item = await queue.get()
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def migrate_legacy_keys(bus: Bus) -> int:
    """Move every status stored under the earlier key layout `<kind>/<source>/<key>` to its `status_key`
    (unless one was written there since: it is newer) and purge the old key, so that nothing of it is
    left to look at again (a deleted key stays a subject); returns how many moved. Idempotent, so
    builders of several scopes may run it at once. An entry that is no status is left."""
    moved = 0
    for key in await _keys(bus, ""):
        if not is_legacy_status_key(key):
            continue
        try:
            entry = await bus.status.get(key)
        except KeyNotFoundError:
            entry = None  # deleted under the earlier layout: only its marker is left
        status = _decode(entry.value) if entry is not None else None
        if entry is not None and status is None:
            continue  # no status of ours
        if status is not None:
            with contextlib.suppress(KeyWrongLastSequenceError):
                await bus.status.create(
                    status_key(status.kind, status.source, status.key), msgspec.json.encode(status)
                )
                moved += 1
        await bus.js.purge_stream(f"KV_{STATUS_BUCKET}", subject=_SUBJECT_PREFIX + key)
    if moved:
        log.info("moved %d status entries to the key layout <kind>.<source>/<key>", moved)
    return moved


async def _keys(bus: Bus, prefix: str, key_filter: str = ">") -> list[str]:
    """Stored keys matching `key_filter` (a KV key pattern) and starting with `prefix`, deleted ones
    included. Read from the bucket stream's subjects, every page of them (xdsbus.kv_listing), not
    `KeyValue.keys()`: nats-py's `keys()` can end early (nats-io/nats.py#842), and a key left out here is
    a legacy entry never moved or a stale status never removed."""
    return [
        key for key in await kv_listing.stored_keys(bus, STATUS_BUCKET, key_filter) if key.startswith(prefix)
    ]


async def _get(bus: Bus, kv_key: str) -> ObjectStatus | None:
    try:
        entry = await bus.status.get(kv_key)
    except KeyNotFoundError:
        return None
    return _decode(entry.value)


def _decode(value: bytes | None) -> ObjectStatus | None:
    try:
        return msgspec.json.decode(value or b"", type=ObjectStatus)
    except msgspec.DecodeError:
        return None
