"""Transient NATS faults are ridden through (issue 14): a ledger publish retried across a server
restart is stored once, an acknowledgement lost after the store counts as success through the
duplicate window, a refusal of the fence stays a refusal, and a lease survives a restart shorter than
its TTL (docs/design.md §5)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.errors import NoStreamResponseError

from xdsbus.bus import LEDGER_STREAM, Bus, BusSettings, connect
from xdsbus.lease import Lease
from xdsbus.ledger.publisher import LedgerPublisher, LostLedger
from xdsbus.nats_options import NatsOptions
from xdsbus.transient import is_transient
from xdsbus_dev.harness.processes import NatsServer, eventually


@pytest.fixture
async def fast_bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A bus that reconnects quickly after the server comes back."""
    options = NatsOptions(servers=(nats_server.url,), ping_interval=1.0, reconnect_wait=0.3)
    bus = await connect(BusSettings(url=nats_server.url, nats=options), name="faults-test")
    yield bus
    await bus.close()


def kill_server(server: NatsServer) -> None:
    """SIGKILL the server (no clean shutdown), keeping its port and store for a restart."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait()


async def records_on(bus: Bus, subject: str) -> int:
    info = await bus.js.stream_info(LEDGER_STREAM, subjects_filter=subject)
    return (info.state.subjects or {}).get(subject, 0)


def test_timeouts_and_leader_changes_are_transient_and_fence_refusals_are_not() -> None:
    from nats.js.errors import APIError, KeyWrongLastSequenceError, NoStreamResponseError

    assert is_transient(NatsTimeoutError())
    assert is_transient(NoStreamResponseError())
    assert is_transient(APIError(code=503, err_code=10008, description="temporarily unavailable"))
    assert not is_transient(APIError(code=400, err_code=10071, description="wrong last sequence"))
    assert not is_transient(KeyWrongLastSequenceError())


@pytest.mark.slow
async def test_a_publish_retried_across_a_server_restart_is_stored_once(
    nats_server: NatsServer, fast_bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    publisher = LedgerPublisher(fast_bus, "restart", "test")
    await publisher.publish_term(1, "first")
    kill_server(nats_server)
    publishing = asyncio.create_task(publisher.publish_term(2, "second"))

    async def retrying() -> bool:
        return "publishing restart:term:2" in caplog.text and "retrying" in caplog.text

    await eventually(retrying, timeout=20, what="the publish to meet the outage")
    assert not publishing.done()
    nats_server.start()
    record = await asyncio.wait_for(publishing, timeout=60)
    assert record.term.term == 2
    assert await records_on(fast_bus, publisher.subject) == 2
    # The fence still holds after the retry: it expects the stored record's sequence.
    await publisher.publish_term(3, "third")
    assert await records_on(fast_bus, publisher.subject) == 3


@dataclasses.dataclass
class LosingFirstAck:
    """A JetStream context whose first ledger publish is stored but answered with a timeout, as when
    the acknowledgement is lost on its way back."""

    js: JetStreamContext
    lost: int = 0

    async def publish(self, *args: Any, **kwargs: Any) -> Any:
        ack = await self.js.publish(*args, **kwargs)
        if not self.lost:
            self.lost += 1
            raise NatsTimeoutError
        return ack

    def __getattr__(self, name: str) -> Any:
        return getattr(self.js, name)


async def test_a_duplicate_ack_of_a_lost_acknowledgement_counts_as_success(bus: Bus) -> None:
    losing = LosingFirstAck(bus.js)
    publisher = LedgerPublisher(dataclasses.replace(bus, js=losing), "dup", "test")  # type: ignore[arg-type]
    await publisher.publish_term(1, "me")
    assert losing.lost == 1
    assert await records_on(bus, publisher.subject) == 1
    first = publisher.last_stream_seq
    assert first > 0
    # The next record is fenced on the sequence the duplicate acknowledgement gave.
    await publisher.publish_term(2, "me")
    assert await records_on(bus, publisher.subject) == 2
    assert publisher.last_stream_seq > first


async def test_a_duplicate_of_another_builders_record_and_a_stale_fence_are_refused(bus: Bus) -> None:
    mine = LedgerPublisher(bus, "fence", "test")
    await mine.publish_term(1, "me")
    other = LedgerPublisher(bus, "fence", "test")
    with pytest.raises(LostLedger, match="written by another builder"):
        await other.publish_term(2, "other")
    # Same message id, other bytes, no retry: never taken for this publisher's own record.
    other.adopt_head(0, 0)
    with pytest.raises(LostLedger):
        await other.publish_term(1, "other")
    assert await records_on(bus, mine.subject) == 1


@pytest.mark.slow
async def test_a_lease_survives_a_server_restart_shorter_than_its_ttl(
    nats_server: NatsServer, fast_bus: Bus
) -> None:
    lease = Lease(fast_bus, "builder.restart", "me", ttl=6.0)
    assert await lease.acquire(asyncio.Event())
    try:
        kill_server(nats_server)

        async def outage_past_a_renewal() -> bool:
            # The renewal interval is TTL/3 = 2 s: by 3 s down, a renewal has met the outage.
            return fast_bus.connection.disconnected_for() > 3.0

        await eventually(outage_past_a_renewal, timeout=10, what="a renewal to meet the outage")
        assert not lease.lost.is_set()
        nats_server.start()
        entry = await eventually(
            lambda: fast_bus.leases.get("builder.restart"), timeout=20, what="the server to answer"
        )
        revision = entry.revision

        async def renewed_after_restart() -> bool:
            return (await fast_bus.leases.get("builder.restart")).revision > revision

        await eventually(renewed_after_restart, timeout=10, what="a renewal after the restart")
        assert not lease.lost.is_set()
    finally:
        await lease.release()


@dataclasses.dataclass
class FlakyLeases:
    """The leases bucket, whose first `failures` updates find no JetStream to answer (as right after a
    server restart, or while the bucket's stream has no leader)."""

    kv: Any
    failures: int

    async def update(self, *args: Any, **kwargs: Any) -> int:
        if self.failures:
            self.failures -= 1
            raise NoStreamResponseError
        return int(await self.kv.update(*args, **kwargs))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_a_lease_renewer_keeps_renewing_through_no_stream_responses(bus: Bus) -> None:
    flaky = FlakyLeases(bus.leases, failures=2)
    lease = Lease(dataclasses.replace(bus, leases=flaky), "builder.flaky", "me", ttl=1.5)  # type: ignore[arg-type]
    assert await lease.acquire(asyncio.Event())
    try:

        async def renewed_after_the_faults() -> bool:
            return not flaky.failures and (await bus.leases.get("builder.flaky")).revision > lease.term

        await eventually(renewed_after_the_faults, timeout=10, what="a renewal after the faults")
        assert not lease.lost.is_set()
    finally:
        await lease.release()


@dataclasses.dataclass
class LostAnswers:
    """The leases bucket, whose first `lost` updates are stored but answered by a timeout (the answer
    lost in an election, or the connection dropped just after the server stored the renewal)."""

    kv: Any
    lost: int

    async def update(self, *args: Any, **kwargs: Any) -> int:
        revision = int(await self.kv.update(*args, **kwargs))
        if self.lost:
            self.lost -= 1
            raise NatsTimeoutError
        return revision

    def __getattr__(self, name: str) -> Any:
        return getattr(self.kv, name)


async def test_a_renewal_stored_whose_answer_was_lost_keeps_the_lease(bus: Bus) -> None:
    # The retry with the old revision is refused (wrong last sequence); the entry still names this
    # holder at a newer revision, so the renewal counts as done instead of costing the lease.
    lost = LostAnswers(bus.leases, lost=1)
    lease = Lease(dataclasses.replace(bus, leases=lost), "builder.lost-answer", "me", ttl=1.5)  # type: ignore[arg-type]
    assert await lease.acquire(asyncio.Event())
    try:

        async def renewed_twice_after() -> bool:
            entry = await bus.leases.get("builder.lost-answer")
            return not lost.lost and entry.revision is not None and entry.revision > lease.term + 2

        await eventually(renewed_twice_after, timeout=10, what="renewals after the lost answer")
        assert not lease.lost.is_set()
    finally:
        await lease.release()
