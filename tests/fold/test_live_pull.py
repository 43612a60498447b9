"""Following the event log through a durable pull consumer (fold/live_pull.py) on a real nats-server:
every event once, in order, across requests ended every way; a lone event handed over at once; the
pending count; acks moving the ack floor; a deleted consumer and a silent server ending the read."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from nats.js import api

from tests.support.objects import service
from tests.support.sources import ScriptedSource
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, decode
from xdsbus.fold import live_pull
from xdsbus.fold.live_pull import Delivery, LivePull, PullInterrupted
from xdsbus.transient import is_transient
from xdsbus_dev.harness.processes import eventually

CONSUMER = "live-pull-test"


async def _consumer(bus, **config) -> api.ConsumerInfo:
    """A consumer like the builder's: durable, from the start of the log, AckPolicy.ALL."""
    return await bus.js.add_consumer(
        EVENTS_STREAM,
        config=api.ConsumerConfig(
            durable_name=CONSUMER,
            deliver_policy=api.DeliverPolicy.ALL,
            filter_subject=f"{EVENTS_SUBJECT_PREFIX}.>",
            ack_policy=api.AckPolicy.ALL,
            max_ack_pending=-1,
            **config,
        ),
    )


async def _take(
    reader: LivePull, count: int, last_seq: int | None, within: float = 10.0
) -> list[list[Delivery]]:
    """The batches `next` returns until `count` deliveries came; with the log's `last_seq` (a log that
    does not grow meanwhile), checking after each that the pending count is what it holds past the
    batch's newest event."""
    batches: list[list[Delivery]] = []
    async with asyncio.timeout(within):
        while sum(map(len, batches)) < count:
            batch = await reader.next(1.0)
            if batch:
                batches.append(batch)
                assert last_seq is None or reader.pending == last_seq - batch[-1].seq
    return batches


async def test_events_arrive_in_order_with_the_pending_count_and_acks_move_the_ack_floor(bus):
    src = ScriptedSource(bus)
    for n in range(30):
        await src.put(service(f"svc-{n}"))
    size = len((await bus.js.get_msg(EVENTS_STREAM, 1)).data or b"")
    info = await _consumer(bus)
    assert info.num_pending == 30
    # Requests of 4 messages, and of fewer when about 3 reach max_bytes.
    reader = await LivePull(bus, info, batch=4, max_bytes=3 * size + 300).start()
    try:
        assert reader.pending == 30
        batches = await _take(reader, 30, 30)
        seqs = [d.seq for batch in batches for d in batch]
        assert seqs == list(range(1, 31))
        assert all(
            decode(d.data).kind == "Service" and d.subject.startswith("xdsbus.events.")
            for b in batches
            for d in b
        )
        assert max(map(len, batches)) <= 4
        assert len(batches) >= 10
        assert reader.pending == 0

        await reader.ack(batches[2][-1])
        floor = batches[2][-1].seq
        assert await eventually(lambda: _ack_floor_is(reader, floor))
        await reader.ack(batches[-1][-1])
        assert await eventually(lambda: _ack_floor_is(reader, 30))

        # Caught up: more events come as they are published (each with nothing past it when sent).
        for n in range(30, 40):
            await src.put(service(f"svc-{n}"))
        more = await _take(reader, 10, None)
        assert [d.seq for batch in more for d in batch] == list(range(31, 41))
        assert reader.pending == 0
        # Caught up, a wait stays open; once closed, the server drops it, its inbox having no interest.
        assert await reader.next(0.2) == []
        assert await eventually(lambda: _requests_waiting(reader, 1), timeout=10.0)
    finally:
        await reader.close()
    assert await eventually(lambda: _requests_waiting(reader, 0), timeout=10.0)


async def _requests_waiting(reader: LivePull, count: int) -> bool:
    return (await reader.consumer_info()).num_waiting == count


async def _ack_floor_is(reader: LivePull, seq: int) -> bool:
    return (await reader.consumer_info()).ack_floor.stream_seq == seq


async def test_a_lone_event_reaches_an_idle_reader_at_once_and_an_idle_wait_ends_empty(bus):
    src = ScriptedSource(bus)
    # Requests that expire (408) and heartbeats every 0.2 s: an idle reader outlives several of each,
    # and its silence bound (0.6 s) is shorter than its waits.
    reader = await LivePull(bus, await _consumer(bus), expires=0.5, heartbeat=0.2).start()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await reader.next(1.2) == []
        assert loop.time() - started >= 1.2
        for n in range(3):
            # Waiting far longer than the event takes: nats-py's long-polling batch fetch held a lone
            # event until the fetch's timeout, which would fail this by the deadline.
            waiting = asyncio.create_task(reader.next(60.0))
            await src.put(service(f"lone-{n}"))
            async with asyncio.timeout(10.0):
                got = await waiting
            assert [d.seq for d in got] == [n + 1]
            assert reader.pending == 0
            assert await reader.next(0.1) == []
    finally:
        await reader.close()


async def _read_until_interrupted(reader: LivePull, reason: str, each: float) -> PullInterrupted:
    """Read until the reader raises PullInterrupted saying `reason` (within 10 s); the error."""
    with pytest.raises(PullInterrupted, match=reason) as raised:
        async with asyncio.timeout(10.0):
            while True:
                await reader.next(each)
    return raised.value


async def test_a_request_the_server_drops_silently_interrupts_the_read(bus):
    info = await _consumer(bus, max_waiting=1)
    # Another request holds the consumer's only waiting slot, so the server refuses the reader's, and
    # says nothing (nats-server 2.15, for a request that asks for heartbeats).
    other = bus.nc.new_inbox()
    await bus.nc.subscribe(other)
    await bus.nc.publish(
        f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{CONSUMER}",
        b'{"batch": 1, "expires": 5000000000}',
        reply=other,
    )
    await bus.nc.flush()
    reader = await LivePull(bus, info, expires=1.0, heartbeat=0.2).start()
    try:
        await _read_until_interrupted(reader, "no reply from the server", each=0.3)
    finally:
        await reader.close()


async def test_a_deleted_consumer_interrupts_the_read(bus):
    reader = await LivePull(bus, await _consumer(bus)).start()
    try:
        assert await reader.next(0.1) == []
        await bus.js.delete_consumer(EVENTS_STREAM, CONSUMER)
        interrupted = await _read_until_interrupted(reader, "Consumer Deleted", each=1.0)
        # The builder's restart path: a transient fault, after which it leads again on a new consumer.
        assert is_transient(interrupted)
        with pytest.raises(PullInterrupted):
            await reader.next(0.1)
    finally:
        await reader.close()


async def test_a_silent_server_interrupts_the_read(bus, nats_server):
    reader = await LivePull(bus, await _consumer(bus), expires=1.0, heartbeat=0.2).start()
    assert nats_server.proc is not None
    os.kill(nats_server.proc.pid, signal.SIGSTOP)
    try:
        await _read_until_interrupted(reader, "no reply from the server", each=0.3)
    finally:
        os.kill(nats_server.proc.pid, signal.SIGCONT)
        await reader.close()


def test_the_pending_count_is_read_from_either_reply_form():
    assert live_pull.num_pending("$JS.ACK.XDSBUS_EVENTS.c1.1.42.7.1796659488418176631.3") == 3
    assert live_pull.num_pending("$JS.ACK.dom.acc.XDSBUS_EVENTS.c1.1.42.7.1796659488418176631.3.rnd") == 3
    assert live_pull.num_pending("$JS.ACK.dom.acc.XDSBUS_EVENTS.c1.1.42.7.1796659488418176631.3") == 3
