"""Reading the event log in order from a sequence, for restarts and replays."""

from __future__ import annotations

from collections.abc import Callable

from nats.js import api
from nats.js.errors import NotFoundError

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from xdsbus.fold.folding import BatchResult, fold_stored
from xdsbus.fold.state import FoldState

FETCH_BATCH = 2000


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
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=state.seq + 1,
        ack_policy=api.AckPolicy.NONE,
        inactive_threshold=60.0,
        mem_storage=True,
    )
    sub = await bus.js.pull_subscribe(f"{EVENTS_SUBJECT_PREFIX}.>", stream=EVENTS_STREAM, config=config)
    try:
        done = False
        while not done and state.seq < end_seq:
            try:
                msgs = await sub.fetch(FETCH_BATCH, timeout=5)
            except TimeoutError:
                # Nothing after state.seq although end_seq is ahead: the log holds no more. Events
                # once there but deleted since are a gap; sequences never written are not.
                last = (await bus.js.stream_info(EVENTS_STREAM)).state.last_seq
                if last > state.seq:
                    raise EventGap(state.seq, state.seq + 1, last) from None
                break
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq > end_seq:
                    if state.seq < end_seq:
                        # The next event is past end_seq, so the ones up to it were deleted.
                        raise EventGap(state.seq, state.seq + 1, seq - 1)
                    done = True
                    break
                check_next(state, seq)
                await fold_stored(bus, state, seq, msg.subject, msg.data, result)
            if on_batch is not None:
                on_batch(min(state.seq, end_seq) - start, end_seq - start)
        state.seq = max(state.seq, end_seq)
        return result
    finally:
        try:
            await sub.unsubscribe()
        except NotFoundError:
            pass
