"""Pipelined JetStream publishes (xdsbus.jetstream_acks) on a real nats-server: acknowledgements come
back with the stream's sequence, an error answer fails its publish, and a batch whose answers never come
fails after its timeout instead of waiting forever; a group of publishes awaited together does the same."""

from __future__ import annotations

import asyncio

import pytest
from nats.errors import MaxPayloadError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError

from xdsbus import buffered_publish, direct_replies
from xdsbus.bus import STATUS_BUCKET, Bus
from xdsbus.events import EVENTS_STREAM
from xdsbus.jetstream_acks import Ack, AckedPublisher


async def all_acked(pending: list[asyncio.Future[Ack]], timeout: float = 10.0) -> None:
    """Until every publish of `pending` is acknowledged: the first error, or nats-py's TimeoutError
    once `timeout` passed; either way the publishes still waiting are cancelled."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*pending)
    except TimeoutError:
        raise NatsTimeoutError from None
    finally:
        for ack in pending:
            ack.cancel()


async def test_a_batch_is_acknowledged_in_the_stream(bus: Bus) -> None:
    acks = bus.acks()
    pending = [await acks.publish(f"$KV.{STATUS_BUCKET}.test.k{i}", b"{}") for i in range(50)]
    await all_acked(pending)
    sequences = [ack.result().seq for ack in pending]
    assert sequences == sorted(sequences) and len(set(sequences)) == 50
    assert {ack.result().stream for ack in pending} == {f"KV_{STATUS_BUCKET}"}

    group = acks.group()
    for i in range(50):
        await group.publish(f"$KV.{STATUS_BUCKET}.test.g{i}", f"g{i}".encode())
    await group.acked()
    assert len(group) == 50
    stored = await bus.js.get_last_msg(f"KV_{STATUS_BUCKET}", f"$KV.{STATUS_BUCKET}.test.g49")
    assert stored.data == b"g49"
    with pytest.raises(RuntimeError):
        await group.publish(f"$KV.{STATUS_BUCKET}.test.late", b"x")
    await acks.group().acked()  # an empty group has nothing to wait for


async def test_no_stream_fails_the_publish(bus: Bus) -> None:
    pending = [await bus.acks().publish("no.stream.holds.this", b"x")]
    with pytest.raises(NoStreamResponseError):
        await all_acked(pending)


async def test_an_error_inside_a_group_fails_the_group_with_that_error(bus: Bus) -> None:
    acks = bus.acks()
    subject = f"$KV.{STATUS_BUCKET}.test.group"
    # One publish among acknowledged ones that no stream takes.
    group = acks.group()
    await group.publish(subject, b"first")
    await group.publish("no.stream.holds.this", b"x")
    await group.publish(subject, b"last")
    with pytest.raises(NoStreamResponseError):
        await group.acked()
    # Errors JetStream answers (the subject moved on since the sequence expected; another stream
    # expected): the first is raised, as js.publish raises it, even when it came before the wait.
    group = acks.group()
    for i in range(20):
        await group.publish(subject, f"ok{i}".encode())
    await group.publish(subject, b"stale", headers={"Nats-Expected-Last-Subject-Sequence": "1"})
    await group.publish(subject, b"elsewhere", headers={"Nats-Expected-Stream": "OTHER"})
    await group.publish(subject, b"after")
    # The stream answers in order: once this is acknowledged, every answer of the group has come.
    await all_acked([await acks.publish(subject, b"probe")])
    with pytest.raises(APIError) as raised:
        await group.acked()
    assert raised.value.err_code == 10071
    latest = await bus.js.get_last_msg(f"KV_{STATUS_BUCKET}", subject)
    assert latest.data == b"probe"


async def test_answers_that_never_come_time_out_and_are_forgotten(bus: Bus) -> None:
    # A plain subscriber takes the message and never answers, as a publish whose answer was lost.
    silent = await bus.nc.subscribe("silent.subject")
    acks = bus.acks()
    pending = [await acks.publish("silent.subject", b"x") for _ in range(3)]
    with pytest.raises(NatsTimeoutError):
        await all_acked(pending, timeout=0.3)
    assert all(ack.cancelled() for ack in pending)

    group = acks.group()
    await group.publish(f"$KV.{STATUS_BUCKET}.test.answered", b"x")
    await group.publish("silent.subject", b"x")
    with pytest.raises(NatsTimeoutError):
        await group.acked(timeout=0.3)
    assert group.done()

    # The publisher closing cancels what waits on its publishes, as it cancels their futures.
    group = acks.group()
    await group.publish("silent.subject", b"x")
    waiting = asyncio.create_task(group.acked())
    await asyncio.sleep(0)
    await acks.close()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await silent.unsubscribe()


async def test_a_publish_with_headers_goes_through_the_buffer_as_nats_py_would_send_it(bus: Bus) -> None:
    # The watchers' events take this way (xdsbus.buffered_publish): it must frame the message as
    # nats-py does, header values cleaned of line breaks, and JetStream must see the id to deduplicate.
    assert buffered_publish.usable(bus.nc)
    acks = bus.acks()
    subject = "xdsbus.events.test.buffered.Service"
    odd_id = " test/buffered:Service:a\r\nb:r1@x.1 "
    first = [await acks.publish(subject, b"\x81\xa1v\x01", headers={"Nats-Msg-Id": odd_id}) for _ in range(2)]
    other = await acks.publish(subject, b"", headers={"Nats-Msg-Id": "test/buffered:other@x.2"})
    await all_acked([*first, other])
    stored, again = first[0].result(), first[1].result()
    assert not stored.duplicate and again.duplicate and again.seq == stored.seq
    msg = await bus.js.get_msg(EVENTS_STREAM, stored.seq)
    assert msg.data == b"\x81\xa1v\x01"
    assert msg.headers == {"Nats-Msg-Id": "test/buffered:Service:a  b:r1@x.1"}
    empty = await bus.js.get_msg(EVENTS_STREAM, other.result().seq)
    assert not empty.data and empty.headers == {"Nats-Msg-Id": "test/buffered:other@x.2"}

    with pytest.raises(MaxPayloadError):
        await acks.publish(subject, b"x" * (bus.nc.max_payload + 1), headers={"Nats-Msg-Id": "big"})


async def test_a_publish_without_headers_goes_through_the_buffer_and_a_full_buffer_waits(bus: Bus) -> None:
    # The builder's bodies and statuses take this way: a plain PUB, stored as sent.
    assert buffered_publish.usable(bus.nc)
    acks = bus.acks()
    plain = [await acks.publish(f"$KV.{STATUS_BUCKET}.test.plain{i}", f"v{i}".encode()) for i in range(3)]
    # Past nats-py's pending limit the buffer is not used: its own publish waits for the buffer to drain.
    big = b"b" * (bus.nc._max_pending_size + 1)
    bus.nc._pending.append(big)
    bus.nc._pending_data_size += len(big)
    try:
        assert not buffered_publish.usable(bus.nc)
    finally:
        bus.nc._pending.remove(big)
        bus.nc._pending_data_size -= len(big)
    await all_acked(plain)
    for i, ack in enumerate(plain):
        assert (await bus.js.get_msg(f"KV_{STATUS_BUCKET}", ack.result().seq)).data == f"v{i}".encode()


async def test_answers_reach_their_publishes_directly_and_are_counted_as_nats_py_would(bus: Bus) -> None:
    # On nats-py's own client the acknowledgements skip its per-message machinery (xdsbus.direct_replies):
    # each still reaches its publish and is counted; an answer with headers (no responders) goes to the
    # subscription's callback as before; once the publisher closes, nats-py's own reading is back.
    acks = AckedPublisher(bus.nc)
    received = bus.nc.stats["in_msgs"]
    pending = [await acks.publish(f"$KV.{STATUS_BUCKET}.test.d{i}", b"{}") for i in range(20)]
    assert direct_replies.usable(bus.nc) and "_process_msg" in vars(bus.nc)
    await all_acked(pending)
    assert len({ack.result().seq for ack in pending}) == 20
    assert bus.nc.stats["in_msgs"] - received >= 20
    with pytest.raises(NoStreamResponseError):
        await all_acked([await acks.publish("no.stream.holds.this", b"x")])
    await acks.close()
    assert "_process_msg" not in vars(bus.nc)
