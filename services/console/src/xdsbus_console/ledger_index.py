"""Each scope's ledger as the timeline shows it: one summary per version and one mark per term record,
read once and then extended from the last stream sequence seen (records never change once written,
docs/design.md §5), so a page load costs the records published since the previous one."""

from __future__ import annotations

import asyncio
import datetime

import msgspec
from google.protobuf import json_format

from xdsbus.bus import LEDGER_STREAM, LEDGER_SUBJECT_PREFIX, Bus
from xdsbus.contract import digest
from xdsbus.ledger import reader
from xdsbus.proto.ledger.v1 import ledger_pb2

_SUBJECT_PREFIX = f"{LEDGER_SUBJECT_PREFIX}."


def iso_time(unix_nano: int) -> str:
    """A record's time as ISO 8601 UTC, to the millisecond."""
    return datetime.datetime.fromtimestamp(unix_nano / 1e9, tz=datetime.UTC).isoformat(
        timespec="milliseconds"
    )


class VersionSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One version as a timeline row."""

    scope: str
    version: int
    parent: int
    stream_seq: int
    first_seq: int
    last_seq: int
    # Events folded into it: its event range, both ends included.
    events: int
    time: str
    time_ms: int
    digest: str
    digest_algorithm: str
    resources: int
    changed: int
    removed: int
    # Bytes of the bodies this version changed (the sizes its change list names).
    changed_bytes: int
    translator_version: str
    # A pin (rollback) the record carries, as JSON, when the ledger format has one (issue 17 point 1).
    pin: dict[str, object] | None = None


class TermMark(msgspec.Struct, frozen=True, kw_only=True):
    """A term record: a builder took the scope's lease and leads after `after_version`."""

    scope: str
    term: int
    holder: str
    after_version: int
    stream_seq: int
    time: str
    time_ms: int


def _pin_of(record: ledger_pb2.Version) -> dict[str, object] | None:
    """The record's pin, if its message type has such a field and it is set: rollback adds it to the
    ledger format (docs/design.md §5), and the timeline marks it without this module naming its fields."""
    for field, value in record.ListFields():
        if field.name == "pin" and field.message_type is not None:
            return json_format.MessageToDict(value, preserving_proto_field_name=True)
    return None


async def summarize(bus: Bus, scope: str, entry: reader.LedgerEntry) -> VersionSummary:
    """A version record as a timeline row (its change list is read for the changed bytes)."""
    record = entry.record
    changes = await reader.changes_of(bus, record)
    return VersionSummary(
        scope=scope,
        version=record.version,
        parent=record.parent,
        stream_seq=entry.stream_seq,
        first_seq=record.first_seq,
        last_seq=record.last_seq,
        events=max(0, record.last_seq - record.first_seq + 1),
        time=iso_time(record.time_unix_nano),
        time_ms=record.time_unix_nano // 1_000_000,
        digest=record.digest,
        digest_algorithm=record.digest_algorithm or digest.LINES_V1,
        resources=record.resource_count,
        changed=record.changed_count,
        removed=record.removed_count,
        changed_bytes=sum(ref.size for ref in changes.changed),
        translator_version=record.translator_version,
        pin=_pin_of(record),
    )


def term_mark(scope: str, entry: reader.LedgerEntry) -> TermMark:
    """A term record as a timeline mark."""
    term = entry.record.term
    return TermMark(
        scope=scope,
        term=term.term,
        holder=term.holder,
        after_version=term.head_version,
        stream_seq=entry.stream_seq,
        time=iso_time(term.time_unix_nano),
        time_ms=term.time_unix_nano // 1_000_000,
    )


class _ScopeLedger:
    def __init__(self) -> None:
        self.versions: list[VersionSummary] = []
        self.terms: list[TermMark] = []
        self.last_stream_seq = 0
        self.lock = asyncio.Lock()


class LedgerIndex:
    """The summaries of every scope's versions, kept in memory and brought up to date on demand."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._scopes: dict[str, _ScopeLedger] = {}

    async def scopes(self) -> list[str]:
        """Every scope with a ledger subject on the stream, sorted."""
        info = await self.bus.js.stream_info(LEDGER_STREAM, subjects_filter=f"{_SUBJECT_PREFIX}>")
        return sorted(s.removeprefix(_SUBJECT_PREFIX) for s in info.state.subjects or {})

    async def refresh(self, scope: str) -> _ScopeLedger:
        """Read the scope's records published since the last refresh. Records purged by the history
        window (docs/design.md §5) drop out of the index too."""
        ledger = self._scopes.setdefault(scope, _ScopeLedger())
        async with ledger.lock:
            async for entry in reader.records(self.bus, scope, start_seq=ledger.last_stream_seq + 1):
                if entry.stream_seq <= ledger.last_stream_seq:
                    continue
                if reader.is_term(entry.record):
                    ledger.terms.append(term_mark(scope, entry))
                else:
                    ledger.versions.append(await summarize(self.bus, scope, entry))
                ledger.last_stream_seq = entry.stream_seq
            first = (await self.bus.js.stream_info(LEDGER_STREAM)).state.first_seq
            if ledger.versions and ledger.versions[0].stream_seq < first:
                ledger.versions = [v for v in ledger.versions if v.stream_seq >= first]
                ledger.terms = [t for t in ledger.terms if t.stream_seq >= first]
        return ledger

    async def versions(self, scope: str) -> list[VersionSummary]:
        """The scope's versions, oldest first."""
        return list((await self.refresh(scope)).versions)

    async def terms(self, scope: str) -> list[TermMark]:
        """The scope's term records, oldest first."""
        return list((await self.refresh(scope)).terms)

    async def version(self, scope: str, version: int) -> VersionSummary | None:
        """One version's summary, or None when the scope's ledger does not hold it."""
        for summary in reversed(await self.versions(scope)):
            if summary.version == version:
                return summary
        return None
