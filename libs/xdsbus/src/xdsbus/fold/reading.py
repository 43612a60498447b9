"""Reading the event log in order from a sequence, for restarts and replays."""

from __future__ import annotations

from nats.js import api
from nats.js.errors import NotFoundError

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from xdsbus.fold.folding import BatchResult, fold_stored
from xdsbus.fold.state import FoldState

FETCH_BATCH = 2000


async def last_event_seq(bus: Bus) -> int:
    """The newest sequence in the event log (0 when empty)."""
    info = await bus.js.stream_info(EVENTS_STREAM)
    return info.state.last_seq


async def fold_until(bus: Bus, state: FoldState, end_seq: int) -> BatchResult:
    """Fold every event after `state.seq` up to and including `end_seq`."""
    result = BatchResult()
    if end_seq <= state.seq:
        return result
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
                # Nothing after state.seq although end_seq is ahead: the log holds no more (a gap
                # left by deleted messages at the end); what we have is everything.
                break
            for msg in msgs:
                seq = msg.metadata.sequence.stream
                if seq > end_seq:
                    done = True
                    break
                await fold_stored(bus, state, seq, msg.subject, msg.data, result)
        state.seq = max(state.seq, end_seq)
        return result
    finally:
        try:
            await sub.unsubscribe()
        except NotFoundError:
            pass
