"""Reading the ledger: its head, its versions in order, and the resource set at any version.

A scope's ledger subject also holds term records (docs/design.md §5, fencing): a new leader's first
publish. They are no versions; every function here but `tip` and `records` skips them.

A resource set starts from the newest ledger base at or before its version (`bases.py`) and applies the
records after it, so its cost is the base plus at most `base_every` records, not the whole history;
without a usable base it reads from the first record, which must then be the first version (records
before the history window are purged, docs/design.md §5)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import msgspec
from nats.js import api
from nats.js.errors import NotFoundError

from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest
from xdsbus.contract.resources import ResourceKey
from xdsbus.ledger import bases
from xdsbus.objects import read_object
from xdsbus.proto.ledger.v1 import ledger_pb2


class LedgerEntry(msgspec.Struct, frozen=True):
    """A version record and the stream sequence it sits at."""

    stream_seq: int
    record: ledger_pb2.Version


class VersionNotFound(LookupError):
    """No such version in the scope's ledger."""


class HistoryPurged(VersionNotFound):
    """The records a resource set needs were purged (older than the history window) and no usable
    base covers them."""


class Tip(msgspec.Struct, frozen=True):
    """The end of a scope's ledger subject, read at one instant."""

    # Stream sequence of the newest record on the subject, version or term record (0: the subject is
    # empty). A publisher that continues the ledger expects this as its last subject sequence.
    last_stream_seq: int
    # The newest version (None: no version yet).
    head: LedgerEntry | None


def is_term(record: ledger_pb2.Version) -> bool:
    """Whether a record is a term record rather than a version."""
    return record.HasField("term")


def _parse(data: bytes | None) -> ledger_pb2.Version:
    record = ledger_pb2.Version()
    record.ParseFromString(data or b"")
    return record


async def tip(bus: Bus, scope: str) -> Tip:
    """The newest record of a scope's subject and its newest version. The version is found from the
    newest record by following term records back (each names the record it follows), so both come from
    the same instant: a publish fenced on `last_stream_seq` fails if anything came after that version."""
    try:
        msg = await bus.js.get_last_msg(LEDGER_STREAM, ledger_subject(scope))
    except NotFoundError:
        return Tip(last_stream_seq=0, head=None)
    last = msg.seq or 0
    record, seq = _parse(msg.data), last
    # Usually at most one step: a chain of terms only grows while leaders come and go publishing nothing.
    while is_term(record):
        seq = record.term.after_stream_seq
        if seq == 0:
            return Tip(last_stream_seq=last, head=None)
        record = _parse((await bus.js.get_msg(LEDGER_STREAM, seq)).data)
    return Tip(last_stream_seq=last, head=LedgerEntry(stream_seq=seq, record=record))


async def head(bus: Bus, scope: str) -> LedgerEntry | None:
    """The newest version of a scope, or None for an empty ledger."""
    return (await tip(bus, scope)).head


async def records(bus: Bus, scope: str, *, start_seq: int = 0) -> AsyncGenerator[LedgerEntry, None]:
    """Every record of a scope's subject in order (from stream sequence `start_seq` when given), term
    records included, read with an ordered consumer up to the newest record at the time of the call."""
    last = (await tip(bus, scope)).last_stream_seq
    if last == 0 or last < start_seq:
        return
    if start_seq > 0:
        sub = await bus.js.subscribe(
            ledger_subject(scope),
            ordered_consumer=True,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            config=api.ConsumerConfig(opt_start_seq=start_seq),
        )
    else:
        sub = await bus.js.subscribe(
            ledger_subject(scope), ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
        )
    try:
        while True:
            msg = await sub.next_msg(timeout=10)
            seq = msg.metadata.sequence.stream
            yield LedgerEntry(stream_seq=seq, record=_parse(msg.data))
            if seq >= last:
                return
    finally:
        await sub.unsubscribe()


async def entries(
    bus: Bus, scope: str, *, until: int | None = None, start_seq: int = 0
) -> AsyncGenerator[LedgerEntry, None]:
    """Every version of a scope in order (up to version `until`; from stream sequence `start_seq` when
    given), term records skipped."""
    async with contextlib.aclosing(records(bus, scope, start_seq=start_seq)) as found:
        async for entry in found:
            if is_term(entry.record):
                continue
            if until is not None and entry.record.version > until:
                return
            yield entry


async def find(bus: Bus, scope: str, version: int) -> LedgerEntry:
    """The record of one version, found by a binary search over stream sequences (a few dozen direct
    reads whatever the length of the ledger: versions grow with their sequence on the subject)."""
    subject = ledger_subject(scope)
    last = (await tip(bus, scope)).last_stream_seq
    info = await bus.js.stream_info(LEDGER_STREAM)
    lo, hi = max(1, info.state.first_seq), last + 1
    # The smallest sequence s whose next record on the subject sits at or after `version`.
    while lo < hi:
        mid = (lo + hi) // 2
        found = await _next_on_subject(bus, subject, mid)
        if found is None or _position(found.record) >= version:
            hi = mid
        else:
            lo = mid + 1
    found = await _next_on_subject(bus, subject, lo) if lo <= last else None
    if found is None or is_term(found.record) or found.record.version != version:
        raise VersionNotFound(f"version {version} is not in the ledger of scope {scope!r}")
    return found


def _position(record: ledger_pb2.Version) -> float:
    """Where a record sits in version order: a term record just after the version it follows."""
    return record.term.head_version + 0.5 if is_term(record) else record.version


async def _next_on_subject(bus: Bus, subject: str, seq: int) -> LedgerEntry | None:
    """The first record on `subject` at or after stream sequence `seq`, or None."""
    try:
        msg = await bus.js.get_msg(LEDGER_STREAM, seq=seq, subject=subject, next=True)
    except NotFoundError:
        return None
    return LedgerEntry(stream_seq=msg.seq or seq, record=_parse(msg.data))


async def changes_of(bus: Bus, record: ledger_pb2.Version) -> ledger_pb2.Changes:
    """A record's change list, inline or from the Object Store."""
    if not record.changes_object:
        return record.changes
    data = await read_object(bus.js, bus.ledger_changes, record.changes_object)
    changes = ledger_pb2.Changes()
    changes.ParseFromString(data)
    return changes


def apply_changes(resources: dict[ResourceKey, str], changes: ledger_pb2.Changes) -> None:
    """Advance a resource set (key -> sha256) by one version's change list."""
    for ref in changes.changed:
        resources[ResourceKey(ref.type_url, ref.name)] = ref.sha256
    for gone in changes.removed:
        resources.pop(ResourceKey(gone.type_url, gone.name), None)


async def resource_set(
    bus: Bus,
    scope: str,
    version: int,
    *,
    base: dict[ResourceKey, str] | None = None,
    after: int = 0,
    after_stream_seq: int = 0,
) -> dict[ResourceKey, str]:
    """Every resource at a version (key -> sha256): `base`, the set at version `after` whose record
    sits at stream sequence `after_stream_seq` (0: unknown, read from the first record), advanced by the
    records after it up to `version`. Without `base`, it starts from the newest verified ledger base at
    or before `version`, or from empty before the first version.

    Raises `HistoryPurged` when records between the start and `version` are gone, `VersionNotFound`
    when `version` is not in the ledger."""
    resources = dict(base or {})
    parts = version_parts(
        bus, scope, version, after=after, after_stream_seq=after_stream_seq, from_base=base is None
    )
    async with contextlib.aclosing(parts) as found:
        async for part in found:
            if isinstance(part, ledger_pb2.Changes):
                apply_changes(resources, part)
            else:
                resources = part  # read for this call alone: advanced in place, not copied
    return resources


async def version_parts(
    bus: Bus,
    scope: str,
    version: int,
    *,
    after: int = 0,
    after_stream_seq: int = 0,
    from_base: bool = True,
) -> AsyncGenerator[dict[ResourceKey, str] | ledger_pb2.Changes, None]:
    """A version's resource set in the parts it is read in, for a reader that folds them into a form of
    its own without holding the whole set as a dict first (the edge): with `from_base` and no `after`,
    the resources of the newest verified ledger base at or before `version` (key -> sha256, the
    caller's to consume) when there is one; then the change list of every record after it (or after
    `after`, at stream sequence `after_stream_seq`) up to `version`, in order. `resource_set` is these
    parts applied to a dict. Raises as `resource_set` does."""
    if from_base and after == 0:
        newest = await bases.newest_at_or_before(bus, scope, version)
        if newest is not None:
            after, after_stream_seq = newest.version, newest.stream_seq
            resources = newest.resources
            del newest
            yield resources
            del resources
    found = version == after
    start = after_stream_seq + 1 if after_stream_seq else 0
    previous = after
    async with contextlib.aclosing(entries(bus, scope, until=version, start_seq=start)) as records_after:
        async for entry in records_after:
            if entry.record.version <= after:
                continue
            if entry.record.parent > previous:
                # Records between are gone: purged before this read (no base covers them) or while it
                # read.
                raise HistoryPurged(
                    f"scope {scope!r}: versions after {previous} up to {entry.record.parent} are purged "
                    "and no ledger base covers them"
                )
            previous = entry.record.version
            yield await changes_of(bus, entry.record)
            found = entry.record.version == version
            await asyncio.sleep(0)
    if not found:
        raise VersionNotFound(f"version {version} is not in the ledger of scope {scope!r}")


def digest_matches(record: ledger_pb2.Version, resources: dict[ResourceKey, str]) -> bool:
    """Whether a resource set is the one a record's digest names, computed by the record's own digest
    algorithm (records written before the field existed use `sha256-lines-v1`). Raises
    `UnknownDigestAlgorithm` for an algorithm this version cannot compute."""
    entries = ((k.type_url, k.name, sha) for k, sha in resources.items())
    return digest.digest_of(record.digest_algorithm, entries) == record.digest
