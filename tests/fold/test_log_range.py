"""Reading a range of the event log in pull requests of our own (fold/log_range.py) on a real nats-server:
every event of the range once, in order, whichever way the requests end (batch complete, max_bytes
reached, the log ending), and no consumer left behind."""

from __future__ import annotations

import contextlib

from tests.support.objects import service
from tests.support.sources import ScriptedSource
from xdsbus.events import EVENTS_STREAM, decode
from xdsbus.fold import log_range
from xdsbus.fold.log_range import read_range
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState


async def _read(bus, after: int, end_seq: int) -> list[int]:
    seqs = []
    async with contextlib.aclosing(read_range(bus, after, end_seq)) as batches:
        async for batch in batches:
            for message in batch:
                assert decode(message.data).kind == "Service"
                assert message.subject.startswith("xdsbus.events.")
                seqs.append(message.seq)
    return seqs


async def test_a_range_is_read_once_in_order_across_requests_ended_every_way(bus, monkeypatch):
    src = ScriptedSource(bus)
    for n in range(30):
        await src.put(service(f"svc-{n}"))
    assert await last_event_seq(bus) == 30
    # Requests of 4 messages, and of fewer when about 3 messages reach max_bytes.
    monkeypatch.setattr(log_range, "PULL_BATCH", 4)
    size = len((await bus.js.get_msg(EVENTS_STREAM, 1)).data or b"")
    monkeypatch.setattr(log_range, "PULL_MAX_BYTES", 3 * size + 100)

    assert await _read(bus, 0, 30) == list(range(1, 31))
    assert await _read(bus, 5, 12) == list(range(6, 13))
    # Past the end of the log: what there is, then the end.
    assert await _read(bus, 25, 100) == list(range(26, 31))
    assert await _read(bus, 30, 40) == []
    # A deleted event: the range ends with the first one past it, which shows the gap.
    await bus.js.delete_msg(EVENTS_STREAM, 12)
    assert await _read(bus, 10, 12) == [11, 13]

    # Folded across requests: every event up to the gap.
    state = FoldState()
    await fold_until(bus, state, 11)
    assert state.seq == 11 and state.count() == 11
    info = await bus.js.stream_info(EVENTS_STREAM)
    assert info.state.consumer_count == 0


def test_the_stream_sequence_is_read_from_either_reply_form():
    assert log_range.stream_seq("$JS.ACK.XDSBUS_EVENTS.c1.1.42.7.1796659488418176631.3") == 42
    assert log_range.stream_seq("$JS.ACK.dom.acc.XDSBUS_EVENTS.c1.1.42.7.1796659488418176631.3.rnd") == 42
    assert log_range.stream_seq("$JS.ACK.dom.acc.XDSBUS_EVENTS.c1.1.42.7.1796659488418176631.3") == 42
