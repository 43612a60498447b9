"""Pipelined publishing (docs/design.md §4) on a real nats-server, through a JetStream that fails.

The watcher's NATS connection is the real one wrapped (tests/support/flaky_nats.py) so that every Nth
publish of an event fails with a fault of the bus: refused by the client, stored but its answer lost,
refused by the server because the log is full (err 10077), or never answered (then the watcher's
acknowledgement timeout). Whatever fails,
every event lands in the log exactly once (one message per attempt id), one key's events keep the
order they were sent in, and a resync's sync_begin and sync_end enclose its upserts.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict

import pytest

from tests.support.flaky_nats import MODES, FlakyNats, every
from xdsbus import buffered_publish
from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, Event, Op, decode
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.watcher import LeaseLost, Watcher

SOURCE = "test/pipelined"
KEYS = 40
REVISIONS = 8


class _Source(Watcher):
    async def watch(self) -> None:
        await self.stop.wait()


def _flaky(bus: Bus, n: int) -> tuple[Bus, FlakyNats]:
    nc = FlakyNats(bus.nc, every(n))
    return dataclasses.replace(bus, nc=nc), nc


async def _log(bus: Bus) -> list[tuple[str, Event]]:
    """(Nats-Msg-Id, event) of every message in the event log, in order."""
    out = []
    for seq in range(1, await last_event_seq(bus) + 1):
        msg = await bus.js.get_msg(EVENTS_STREAM, seq)
        assert msg.data is not None and msg.headers is not None
        out.append((msg.headers["Nats-Msg-Id"], decode(msg.data)))
    return out


def _key(i: int) -> str:
    return f"default/svc-{i:03d}"


async def test_failed_publishes_are_stored_once_and_keep_each_keys_order(bus: Bus) -> None:
    flaky_bus, nc = _flaky(bus, 7)
    watcher = _Source(flaky_bus, SOURCE, publish_window=16, publish_timeout=0.15)

    # A resync of every key, then churn: each key through REVISIONS revisions, interleaved, as one burst.
    epoch = await watcher.begin_sync(["Service"])
    for i in range(KEYS):
        assert await watcher.upsert("Service", _key(i), {"n": -1}, rev="init")
    await watcher.end_sync(epoch, {"Service": [_key(i) for i in range(KEYS)]})
    async with watcher.pipelined():
        for n in range(REVISIONS):
            for i in range(KEYS):
                if n == REVISIONS - 1 and i % 10 == 0:
                    assert await watcher.delete("Service", _key(i))
                else:
                    assert await watcher.upsert("Service", _key(i), {"n": n}, rev=str(n))

    log = await _log(bus)
    assert set(nc.failures) == set(MODES), nc.failures
    ids = Counter(message_id for message_id, _ in log)
    assert [i for i, count in ids.items() if count > 1] == [], "an attempt stored twice"
    assert set(ids) == set(nc.tried), "an attempt never stored"
    assert len(log) == 2 + KEYS + KEYS * REVISIONS

    ops = [event.op for _, event in log]
    begin, end = ops.index(Op.SYNC_BEGIN), ops.index(Op.SYNC_END)
    assert begin == 0 and end == KEYS + 1, "the resync's upserts are not between its sync_begin and sync_end"
    per_key: dict[str, list[str]] = defaultdict(list)
    for _, event in log:
        if event.key:
            per_key[event.key].append(event.rev if event.op is Op.UPSERT else "deleted")
    for i in range(KEYS):
        last = "deleted" if i % 10 == 0 else str(REVISIONS - 1)
        expected = ["init", *(str(n) for n in range(REVISIONS - 1)), last]
        assert per_key[_key(i)] == expected, f"{_key(i)} out of order"

    state = FoldState()
    await fold_until(bus, state, await last_event_seq(bus))
    held = state.objects["Service"][SOURCE]
    assert sorted(held) == [_key(i) for i in range(KEYS) if i % 10]
    assert all(held[key].value() == {"n": REVISIONS - 1} for key in held)


async def test_a_refused_renewal_stops_publishing_at_once(bus: Bus) -> None:
    flaky_bus, nc = _flaky(bus, 3)
    watcher = _Source(flaky_bus, SOURCE, publish_window=8, lease_ttl=1.5, publish_timeout=0.3)
    assert await watcher.lead()
    # Someone else writes the lease (a successor after this one was paused): the next renewal is refused,
    # and publishing stops there, in the middle of a burst.
    await bus.leases.put(watcher.lease.name, b"rival")
    with pytest.raises(LeaseLost):
        async with watcher.pipelined():
            for i in itertools.count():
                assert i < 10_000_000, "still publishing after the lease was lost"
                await watcher.upsert("Service", _key(i % KEYS), {"n": i}, rev=str(i))
    sent = nc.calls
    with pytest.raises(LeaseLost):
        await watcher.upsert("Service", _key(0), {"n": -1}, rev="after")
    assert nc.calls == sent, "a publish was sent after the lease was lost"
    await watcher.release()


async def test_a_burst_through_the_connections_buffer_keeps_each_keys_order(bus: Bus) -> None:
    # The real connection: publishes that find room and their key free go straight into its buffer
    # (PublishWindow.submit_now); the others wait for their key or for room, and every key's events
    # still land in the order they were sent, each once.
    watcher = _Source(bus, SOURCE, publish_window=4)
    assert buffered_publish.usable(bus.nc)
    sent = bus.nc.stats["out_msgs"]
    async with watcher.pipelined():
        for n in range(REVISIONS):
            for i in range(KEYS):
                # Runs of one key: the second of each run waits for the first's acknowledgement.
                for run in range(2):
                    assert await watcher.upsert("Service", _key(i), {"n": n, "run": run}, rev=f"{n}.{run}")
    log = await _log(bus)
    assert len(log) == KEYS * REVISIONS * 2
    assert bus.nc.stats["out_msgs"] - sent >= len(log)
    assert len({message_id for message_id, _ in log}) == len(log)
    per_key: dict[str, list[str]] = defaultdict(list)
    for _, event in log:
        per_key[event.key].append(event.rev)
    expected = [f"{n}.{run}" for n in range(REVISIONS) for run in range(2)]
    assert all(per_key[_key(i)] == expected for i in range(KEYS))
