"""The body sweep (docs/design.md §5): bodies no kept version of any scope references are removed.

Mark: for every scope on the ledger stream, the resources of its first kept version (the base at that
version when older records were purged, or nothing when its ledger starts at the first version) plus
every body the records after it name. Sweep: KV `xdsbus_resources` entries and `xdsbus_resources_large`
objects that are not marked.

Safe against a concurrent publish (which stores bodies first, then its record):
- fences: the last stream sequence of each body store, read before the mark begins (or, from the
  builder, at the start of its previous collection, a whole interval earlier): a body written after it
  (a sequence past the fence) is never swept, even if no record names it yet;
- after listing the candidates, the records published meanwhile are marked too;
- each removal is bounded by the sequence that was looked at (`removal.py`), so a body stored again
  meanwhile, under the same content-addressed name, survives.
A scope whose first kept version has no usable base cannot be marked: then nothing is swept.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import msgspec

from xdsbus import kv_listing
from xdsbus.bus import LARGE_RESOURCES_STORE, LEDGER_STREAM, RESOURCES_BUCKET, Bus
from xdsbus.ledger import bases, reader
from xdsbus.ledger.removal import drop_kv_entry, drop_object, object_meta_seq
from xdsbus.objects import list_objects

log = logging.getLogger(__name__)

# Removals in flight at once.
_WINDOW = 64


class Unmarkable(RuntimeError):
    """A scope's kept history cannot be read in full: sweeping would remove bodies it needs."""


class Fence(msgspec.Struct, frozen=True):
    """The last stream sequences of the body stores at one instant: nothing written after is swept."""

    kv: int
    large: int


async def read_fence(bus: Bus) -> Fence:
    """The body stores' fence now."""
    kv = await bus.js.stream_info(f"KV_{RESOURCES_BUCKET}")
    large = await bus.js.stream_info(f"OBJ_{LARGE_RESOURCES_STORE}")
    return Fence(kv=kv.state.last_seq, large=large.state.last_seq)


class Swept(msgspec.Struct, frozen=True):
    """What one sweep did."""

    marked: int
    kv_removed: int
    large_removed: int
    # Unmarked bodies kept because they were written after the fence.
    kept_recent: int


async def scopes(bus: Bus) -> list[str]:
    """Every scope with a subject on the ledger stream (every page of them: a scope left out would have
    its bodies swept)."""
    subjects = await kv_listing.stream_subjects(bus, LEDGER_STREAM, "xdsbus.ledger.>")
    return [subject.removeprefix("xdsbus.ledger.") for subject in subjects]


class Mark(msgspec.Struct, frozen=True):
    """Where a mark pass over one scope stopped: the last stream sequence and version read."""

    stream_seq: int = 0
    version: int | None = None


async def mark_scope(bus: Bus, scope: str, marked: set[str], *, after: Mark | None = None) -> Mark:
    """Add to `marked` every body the kept versions of `scope` name (after `after`: a later pass over
    the records published since); returns where it stopped."""
    start_seq = after.stream_seq + 1 if after else 0
    last = after.stream_seq if after else 0
    # The previous version read (None: none yet).
    previous = after.version if after else None
    async with contextlib.aclosing(reader.records(bus, scope, start_seq=start_seq)) as found:
        async for entry in found:
            last = entry.stream_seq
            if reader.is_term(entry.record):
                continue
            parent = entry.record.parent
            # The first kept version, or one whose predecessors were purged while this pass read (the
            # scope's own leader collecting meanwhile): its full set comes from its base.
            starts = parent != 0 if previous is None else parent != previous
            if starts:
                await _mark_base(bus, scope, entry.record.version, marked)
            previous = entry.record.version
            changes = await reader.changes_of(bus, entry.record)
            marked.update(ref.sha256 for ref in changes.changed)
            await asyncio.sleep(0)
    return Mark(stream_seq=last, version=previous)


async def _mark_base(bus: Bus, scope: str, version: int, marked: set[str]) -> None:
    """The resources of a scope's first kept version, from its base."""
    try:
        base = await bases.load(bus, scope, version)
    except bases.UNUSABLE as exc:
        raise Unmarkable(f"scope {scope!r}: first kept version {version} has no usable base ({exc})") from exc
    marked.update(base.resources.values())


async def sweep(bus: Bus, fence: Fence | None = None) -> Swept:
    """Mark what every scope's kept versions reference, then remove every other body written before
    `fence` (default: now, before the mark begins; an earlier fence only keeps more). Raises
    `Unmarkable` (removing nothing) when a scope's history cannot be read."""
    now = await read_fence(bus)
    kv_fence = min(now.kv, fence.kv) if fence else now.kv
    large_fence = min(now.large, fence.large) if fence else now.large
    marked: set[str] = set()
    read_up_to: dict[str, Mark] = {}
    for scope in await scopes(bus):
        read_up_to[scope] = await mark_scope(bus, scope, marked)

    listed = await _kv_revisions(bus)
    kv_candidates = [(key, rev) for key, rev in listed if key not in marked and rev <= kv_fence]
    kept_recent = 0
    large_candidates: list[tuple[str, str, int]] = []
    for name, nuid in await _large_objects(bus):
        if name in marked:
            continue
        meta_seq = await object_meta_seq(bus.js, LARGE_RESOURCES_STORE, name)
        if meta_seq is None:
            continue
        if meta_seq > large_fence:
            kept_recent += 1
            continue
        large_candidates.append((name, nuid, meta_seq))

    # Versions published while the candidates were listed name bodies stored before the fence too.
    for scope in await scopes(bus):
        read_up_to[scope] = await mark_scope(bus, scope, marked, after=read_up_to.get(scope))
    kv_candidates = [(key, rev) for key, rev in kv_candidates if key not in marked]
    large_candidates = [c for c in large_candidates if c[0] not in marked]

    for i in range(0, len(kv_candidates), _WINDOW):
        batch = kv_candidates[i : i + _WINDOW]
        await asyncio.gather(*(drop_kv_entry(bus.js, RESOURCES_BUCKET, key, rev) for key, rev in batch))
    for name, nuid, meta_seq in large_candidates:
        await drop_object(bus.js, LARGE_RESOURCES_STORE, name, nuid, meta_seq)
    return Swept(
        marked=len(marked),
        kv_removed=len(kv_candidates),
        large_removed=len(large_candidates),
        kept_recent=kept_recent,
    )


async def _kv_revisions(bus: Bus) -> list[tuple[str, int]]:
    """Every key of `xdsbus_resources` with its current revision (its stream sequence)."""
    watcher = await bus.resources.watchall(meta_only=True, ignore_deletes=True)
    found: list[tuple[str, int]] = []
    try:
        async for entry in watcher:
            if entry is None:  # the initial values are all delivered
                break
            found.append((entry.key, entry.revision or 0))
    finally:
        await watcher.stop()
    return found


async def _large_objects(bus: Bus) -> list[tuple[str, str]]:
    """Every object of `xdsbus_resources_large`: (name, nuid)."""
    infos = await list_objects(bus.large_resources, what="the large resource bodies")
    return [(info.name, info.nuid or "") for info in infos if not info.deleted]
