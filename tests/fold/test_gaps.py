"""Reading the log never folds over a gap (docs/design.md §4) on a real nats-server: events purged from
its front, deleted inside it or at its end make `fold_until` raise EventGap naming the missing range."""

from __future__ import annotations

import pytest

from tests.support.objects import service
from tests.support.sources import ScriptedSource
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.reading import EventGap, find_gap, fold_until, last_event_seq
from xdsbus.fold.state import FoldState


async def _six_events(bus) -> None:
    src = ScriptedSource(bus)
    for n in range(6):
        await src.put(service(f"svc-{n}"))
    assert await last_event_seq(bus) == 6


async def test_a_purged_front_is_a_gap_for_a_fold_from_before_it(bus):
    await _six_events(bus)
    await bus.js.purge_stream(EVENTS_STREAM, seq=4)
    assert await find_gap(bus, 3) is None
    with pytest.raises(EventGap, match=r"events 1\.\.3 are missing after sequence 0"):
        await fold_until(bus, FoldState(), 6)
    # A fold from a state at or after the last purged event reads on.
    state = FoldState()
    state.seq = 3
    await fold_until(bus, state, 6)
    assert state.seq == 6


async def test_an_event_deleted_inside_or_at_the_end_is_a_gap(bus):
    await _six_events(bus)
    await bus.js.delete_msg(EVENTS_STREAM, 3)
    with pytest.raises(EventGap, match=r"events 3\.\.3 are missing after sequence 2"):
        await fold_until(bus, FoldState(), 6)
    # Up to the event before it, nothing is missing; a target inside it is refused.
    assert (await fold_until(bus, FoldState(), 2)).changed
    with pytest.raises(EventGap, match=r"events 3\.\.3 are missing after sequence 2"):
        await fold_until(bus, FoldState(), 3)
    await bus.js.delete_msg(EVENTS_STREAM, 6)
    state = FoldState()
    state.seq = 3
    with pytest.raises(EventGap, match=r"events 6\.\.6 are missing after sequence 5"):
        await fold_until(bus, state, 6)
