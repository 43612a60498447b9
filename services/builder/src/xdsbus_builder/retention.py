"""Retention that follows checkpoints (docs/design.md §4): after each checkpoint the leading builder of a
scope prunes its checkpoints, records its floor in KV xdsbus_retention, and purges the event log below
the lowest floor of all scopes. Events are never purged for their age.

Kept checkpoints: the newest `checkpoints_keep`, the first of each UTC day and of each
`checkpoints_span` events inside the history window, and the newest one before the window, so that every
version inside the window can be replayed, folding at most about `checkpoints_span` events; the floor is
the oldest kept one, once one is older than the window. Near the event log's size cap the
builder keeps only its newest checkpoint (narrowing the window to it, with an alarm in its log and
`xdsbus status`); only when that checkpoint and its tail still fill the log does the log refuse new
events (`discard: new`), and the alarm says so."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

from xdsbus import kv_listing, status_store
from xdsbus.bus import RETENTION_BUCKET, Bus
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.events import EVENTS_STREAM
from xdsbus.ledger import checkpoints
from xdsbus.ledger.checkpoints import Stored
from xdsbus_builder import gaps

log = logging.getLogger(__name__)

DAY = 24 * 3600.0
# The share of the event log's cap at which the builder narrows its window to its newest checkpoint.
PRESSURE = 0.8
# Seconds between looks at the event log's size while no checkpoint is due.
PROBE_EVERY = 5.0
ALARM_KEY = "storage"
FLOOR_PREFIX = "floor."
# Scopes whose floor must be known before anything is purged: the registry watchers follow McpBridge
# from the default scope's newest checkpoint (registry/bridge_follower.py), whichever builders run.
REQUIRED_SCOPES = ("default",)


def kept(stored: Sequence[Stored], *, now: float, keep_newest: int, window: float, span: int = 0) -> set[int]:
    """The sequences of the checkpoints to keep: the newest `keep_newest` (at least one); the oldest of
    each UTC day written inside the window (`now - window` .. `now`), the oldest so that a day's
    checkpoint, once chosen, stays chosen until it leaves the window; with a `span`, likewise the oldest
    inside the window of each `span` events (by sequence), so that a replay to any version in the window
    folds at most about `span` events past its checkpoint however many events a day brings; and the
    newest written before the window, from which every version inside the window can be replayed
    (docs/design.md §5)."""
    by_seq = sorted(stored, key=lambda s: s.seq)
    keep = {s.seq for s in by_seq[-max(1, keep_newest) :]}
    daily: dict[int, Stored] = {}
    spans: dict[int, Stored] = {}
    for s in by_seq:
        if now - window <= s.time <= now:
            daily.setdefault(math.floor(s.time / DAY), s)
            if span > 0:
                spans.setdefault(s.seq // span, s)
    keep |= {s.seq for s in daily.values()} | {s.seq for s in spans.values()}
    before = [s for s in by_seq if s.time < now - window]
    if before:
        keep.add(before[-1].seq)
    return keep


def floor_of(stored: Sequence[Stored], keep: set[int], *, now: float, window: float) -> int:
    """The sequence below which the scope needs no event: its oldest kept checkpoint once one is older
    than the window; 0 (everything) while the window reaches back before every checkpoint."""
    if any(s.seq in keep and s.time < now - window for s in stored):
        return min(keep)
    return 0


def floor_key(scope: str) -> str:
    """The KV xdsbus_retention key of a scope's floor."""
    return f"{FLOOR_PREFIX}{scope}"


async def record_floor(bus: Bus, scope: str, seq: int) -> None:
    """Record the sequence of the oldest checkpoint the scope keeps."""
    await bus.retention.put(floor_key(scope), str(seq).encode())


async def lowest_floor(bus: Bus) -> int | None:
    """The lowest floor of all scopes; None while a required scope has recorded none (nothing may be
    purged then). Every scope's floor counts, however many scopes there are: they are read as listed
    from the bucket stream's subjects (xdsbus.kv_listing), not from nats-py's `KeyValue.keys()`, which
    can leave out a key written just before; a deleted or purged floor counts for nothing."""
    values = await kv_listing.live_values(bus, RETENTION_BUCKET, f"{FLOOR_PREFIX}>")
    floors = {key.removeprefix(FLOOR_PREFIX): int((value or b"0").decode()) for key, value in values.items()}
    if not floors or any(scope not in floors for scope in REQUIRED_SCOPES):
        return None
    return min(floors.values())


class Retention:
    """The retention of one scope, run by its leader after each checkpoint it saves."""

    def __init__(self, bus: Bus, scope: str, *, keep_newest: int, window: float, span: int = 0) -> None:
        self.bus = bus
        self.scope = scope
        self.keep_newest = keep_newest
        self.window = window
        self.span = span
        self._probed = -math.inf
        self._alarmed = False
        # The alarm while the log refuses (or is about to refuse) new events: the builder's /ready fails.
        self.full: str | None = None

    async def pressing(self) -> bool:
        """Whether the event log is near its cap (looked at every PROBE_EVERY seconds at most): the
        builder then checkpoints at once, so that `after_checkpoint` can purge below it."""
        if time.monotonic() - self._probed < PROBE_EVERY:
            return False
        self._probed = time.monotonic()
        return await self._usage() >= PRESSURE

    async def _usage(self) -> float:
        info = await self.bus.js.stream_info(EVENTS_STREAM)
        cap = info.config.max_bytes or 0
        return info.state.bytes / cap if cap > 0 else 0.0

    async def after_checkpoint(self, now: float) -> None:
        """Prune the scope's checkpoints, record its floor, purge the log below the lowest floor, and
        raise or clear the storage alarm. `now` is unix seconds."""
        pressed = await self._usage() >= PRESSURE
        stored = await checkpoints.listing(self.bus, self.scope)
        if not stored:
            return
        if pressed:
            keep = {stored[-1].seq}
            floor = stored[-1].seq
        else:
            keep = kept(stored, now=now, keep_newest=self.keep_newest, window=self.window, span=self.span)
            floor = floor_of(stored, keep, now=now, window=self.window)
        # The floor is recorded before the checkpoints below it go: a crash in between leaves it low.
        await record_floor(self.bus, self.scope, floor)
        for s in stored:
            if s.seq not in keep:
                await checkpoints.delete(self.bus, self.scope, s.seq)
        lowest = await lowest_floor(self.bus)
        info = await self.bus.js.stream_info(EVENTS_STREAM)
        if lowest is not None and info.state.first_seq <= lowest:
            await self.bus.js.purge_stream(EVENTS_STREAM, seq=lowest + 1)
            log.info("scope %s: events up to %d purged (the lowest checkpoint floor)", self.scope, lowest)
        if pressed:
            await self._alarm(await self._usage(), stored[-1].seq)
        elif self._alarmed or await status_store.read(
            self.bus, gaps.KIND, gaps.source(self.scope), ALARM_KEY
        ):
            await status_store.delete(self.bus, gaps.KIND, gaps.source(self.scope), ALARM_KEY)
            self._alarmed = False
            self.full = None
            log.info("scope %s: the event log is below %d%% of its cap again", self.scope, PRESSURE * 100)

    async def _alarm(self, usage: float, newest: int) -> None:
        if usage >= PRESSURE:
            state = Verdict.REJECTED
            reason = (
                f"the event log is at {usage:.0%} of its cap with only the checkpoint at {newest} and its "
                "tail (or another scope's floor) left: new events are refused once it is full; raise "
                "XDSBUS_EVENTS_MAX_BYTES and run `xdsbus layout --apply`"
            )
            log.error("scope %s: %s", self.scope, reason)
            self.full = reason
        else:
            state = Verdict.ACCEPTED
            reason = (
                f"the event log neared its cap: history narrowed to the checkpoint at {newest}, older events "
                f"and checkpoints purged (now at {usage:.0%})"
            )
            log.warning("scope %s: %s", self.scope, reason)
            self.full = None
        await status_store.put(
            self.bus,
            ObjectStatus(
                kind=gaps.KIND, source=gaps.source(self.scope), key=ALARM_KEY, state=state, reason=reason
            ),
        )
        self._alarmed = True
