"""Reading the event log in order from a sequence, for restarts and replays."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.folding import BatchResult, fold_stored
from xdsbus.fold.log_range import read_range
from xdsbus.fold.state import FoldState
from xdsbus.gc_pause import gc_paused


class EventGap(LookupError):
    """Events `first`..`last` that a fold from sequence `after` needs are no longer in the log (purged or
    aged out). No fold crosses a gap (docs/design.md §4): folding over it would drop every object whose
    events were in it."""

    def __init__(self, after: int, first: int, last: int) -> None:
        super().__init__(f"events {first}..{last} are missing after sequence {after}")
        self.after = after
        self.first = first
        self.last = last


async def find_gap(bus: Bus, after: int) -> EventGap | None:
    """The gap between sequence `after` and the oldest event still in the log, if there is one."""
    info = await bus.js.stream_info(EVENTS_STREAM)
    if info.state.first_seq > after + 1:
        return EventGap(after, after + 1, info.state.first_seq - 1)
    return None


def check_next(state: FoldState, seq: int) -> None:
    """Raise EventGap when the event at `seq` is not the one after `state.seq`: the log skipped some.
    Events at or before `state.seq` (redeliveries) are no gap."""
    if seq > state.seq + 1:
        raise EventGap(state.seq, state.seq + 1, seq - 1)


async def last_event_seq(bus: Bus) -> int:
    """The newest sequence in the event log (0 when empty)."""
    info = await bus.js.stream_info(EVENTS_STREAM)
    return info.state.last_seq


async def fold_until(
    bus: Bus, state: FoldState, end_seq: int, on_batch: Callable[[int, int], None] | None = None
) -> BatchResult:
    """Fold every event after `state.seq` up to and including `end_seq`; EventGap when some of them are
    no longer in the log. `on_batch(folded, to_fold)` hears after each fetched batch how far it got
    (the CLI's progress bar)."""
    result = BatchResult()
    if end_seq <= state.seq:
        return result
    start = state.seq
    gap = await find_gap(bus, state.seq)
    if gap is not None:
        raise gap
    with gc_paused():
        async with contextlib.aclosing(read_range(bus, state.seq, end_seq)) as batches:
            async for batch in batches:
                for seq, subject, data in batch:
                    if seq > end_seq:
                        if state.seq < end_seq:
                            # The next event is past end_seq, so the ones up to it were deleted.
                            raise EventGap(state.seq, state.seq + 1, seq - 1)
                        break
                    check_next(state, seq)
                    await fold_stored(bus, state, seq, subject, data, result)
                if on_batch is not None:
                    on_batch(min(state.seq, end_seq) - start, end_seq - start)
    if state.seq < end_seq:
        # The log holds nothing after state.seq although end_seq is ahead. Events once there but deleted
        # since are a gap; sequences never written are not.
        last = await last_event_seq(bus)
        if last > state.seq:
            raise EventGap(state.seq, state.seq + 1, last)
    state.seq = max(state.seq, end_seq)
    return result
