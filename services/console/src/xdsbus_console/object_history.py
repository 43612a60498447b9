"""Which versions an object changed: its events in the log (subject `xdsbus.events.*.*.<kind>`, read
through an ordered consumer filtered to the kind) placed in the versions whose event ranges hold them.
An event folded into no version yet is reported as pending; events purged from the log (below every
checkpoint, docs/design.md §4) are not seen."""

from __future__ import annotations

import bisect

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_SUBJECT_PREFIX, MalformedEvent, decode, subject_token
from xdsbus_console.ledger_index import VersionSummary

# Events of the kind read at most per question: a bound on what one click costs on a large log.
MAX_SCANNED = 50_000
_NEXT_TIMEOUT = 2.0


class ObjectChange(msgspec.Struct, frozen=True, kw_only=True):
    """One event of the object, and the version it was folded into (0: none yet)."""

    seq: int
    op: str
    source: str
    version: int


class ObjectHistory(msgspec.Struct, frozen=True, kw_only=True):
    """The object's events in the log, oldest first."""

    kind: str
    key: str
    changes: list[ObjectChange]
    # Whether the scan stopped at MAX_SCANNED events of the kind before the end of the log.
    truncated: bool


def version_of(versions: list[VersionSummary], seq: int) -> int:
    """The version whose event range holds `seq`, or 0 when none does (yet)."""
    ends = [v.last_seq for v in versions]
    at = bisect.bisect_left(ends, seq)
    if at < len(versions) and versions[at].first_seq <= seq:
        return versions[at].version
    return 0


async def history(bus: Bus, kind: str, key: str, versions: list[VersionSummary]) -> ObjectHistory:
    """The events of object `kind` `key` in the log, each with the version of `versions` it went into."""
    sub = await bus.js.subscribe(
        f"{EVENTS_SUBJECT_PREFIX}.*.*.{subject_token(kind)}",
        ordered_consumer=True,
        deliver_policy=api.DeliverPolicy.ALL,
    )
    changes: list[ObjectChange] = []
    scanned = 0
    truncated = False
    try:
        while True:
            if scanned >= MAX_SCANNED:
                truncated = True
                break
            try:
                msg = await sub.next_msg(timeout=_NEXT_TIMEOUT)
            except (TimeoutError, NatsTimeoutError):
                break
            scanned += 1
            try:
                event = decode(msg.data)
            except MalformedEvent:
                event = None
            if event is not None and event.kind == kind and event.key == key:
                seq = msg.metadata.sequence.stream
                changes.append(
                    ObjectChange(
                        seq=seq, op=event.op.value, source=event.source, version=version_of(versions, seq)
                    )
                )
            if msg.metadata.num_pending == 0:
                break
    finally:
        await sub.unsubscribe()
    return ObjectHistory(kind=kind, key=key, changes=changes, truncated=truncated)
