"""Pipelined publishing (docs/design.md §4) on a real nats-server, through a JetStream that fails.

The watcher's JetStream context is the real one wrapped so that every Nth publish fails with a fault
of the bus: lost before reaching the server, stored but its acknowledgement lost, refused because the
log is full (err 10077), or never answered (the watcher's acknowledgement timeout). Whatever fails,
every event lands in the log exactly once (one message per attempt id), one key's events keep the
order they were sent in, and a resync's sync_begin and sync_end enclose its upserts.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections import Counter, defaultdict
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import ServiceUnavailableError

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, Event, Op, decode
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.watcher import LeaseLost, Watcher

SOURCE = "test/pipelined"
KEYS = 40
REVISIONS = 8


class FlakyJetStream:
    """The real JetStream context, except that every `every`-th publish fails, each way in turn."""

    MODES = ("lost", "ack_lost", "log_full", "unanswered")

    def __init__(self, js: Any, every: int) -> None:
        self._js = js
        self.every = every
        self.calls = 0
        self.failures: Counter[str] = Counter()
        self.attempted_ids: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._js, name)

    async def publish_async(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[Any]:
        self.calls += 1
        self.attempted_ids.add(headers["Nats-Msg-Id"])
        if self.calls % self.every:
            return await self._js.publish_async(subject, payload, headers=headers)
        mode = self.MODES[(self.calls // self.every) % len(self.MODES)]
        self.failures[mode] += 1
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if mode == "ack_lost":
            # Stored by the server; the answer is lost on the way back.
            stored = await self._js.publish_async(subject, payload, headers=headers)
            stored.add_done_callback(lambda _: ack.set_exception(NatsTimeoutError()))
        elif mode == "log_full":
            ack.set_exception(
                ServiceUnavailableError(code=503, err_code=10077, description="maximum bytes exceeded")
            )
        elif mode == "lost":
            ack.set_exception(NatsTimeoutError())
        return ack  # "unanswered": never completes


class _Source(Watcher):
    async def watch(self) -> None:
        await self.stop.wait()


def _flaky(bus: Bus, every: int) -> tuple[Bus, FlakyJetStream]:
    js = FlakyJetStream(bus.js, every)
    return dataclasses.replace(bus, js=js), js


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
    flaky_bus, js = _flaky(bus, every=7)
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
    assert set(js.failures) == set(FlakyJetStream.MODES), js.failures
    ids = Counter(message_id for message_id, _ in log)
    assert [i for i, count in ids.items() if count > 1] == [], "an attempt stored twice"
    assert set(ids) == js.attempted_ids, "an attempt never stored"
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
    assert all(held[key].body == {"n": REVISIONS - 1} for key in held)


async def test_a_refused_renewal_stops_publishing_at_once(bus: Bus) -> None:
    flaky_bus, js = _flaky(bus, every=3)
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
    sent = js.calls
    with pytest.raises(LeaseLost):
        await watcher.upsert("Service", _key(0), {"n": -1}, rev="after")
    assert js.calls == sent, "a publish was sent after the lease was lost"
    await watcher.release()
