"""One publisher per source (docs/design.md §4): a watcher publishes only while it holds the lease
`watch.<source_type>.<source_name>`, its events carry the lease's term, a restarted process of the same
identity takes its lease back at once, and one that lost its lease stops publishing and resyncs when it
leads again."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.js.errors import KeyNotFoundError

from tests.watch_file.conftest import EventLog, StartWatcher, write
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.lease import Lease, source_lease_name
from xdsbus_dev.harness.processes import eventually

LEASE = "watch.file.config"


def service_yaml(name: str) -> str:
    return f"""
        apiVersion: v1
        kind: Service
        metadata: {{name: {name}, namespace: default}}
        spec: {{ports: [{{port: 80}}]}}
        """


async def holder(bus: Bus) -> str | None:
    try:
        entry = await bus.leases.get(LEASE)
    except KeyNotFoundError:
        return None
    return (entry.value or b"").decode()


def test_the_lease_is_named_after_the_source() -> None:
    assert source_lease_name("file/config") == LEASE
    assert source_lease_name("nacos/my.registry") == "watch.nacos.my_registry"


async def test_a_restart_with_the_same_identity_takes_the_lease_back_at_once(
    tmp_path: Path, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    directory = tmp_path / "config"
    write(directory / "a.yaml", service_yaml("a"))
    # A previous process of pod-a died holding the lease: the bucket keeps it for its TTL (6 s here).
    before = await bus.leases.create(LEASE, b"pod-a")
    other = await start_watcher(directory, instance_id="pod-b")
    same = await start_watcher(directory, instance_id="pod-a")
    # Waiting 3 s, half the TTL, shows it did not wait for the entry to expire.
    await events.wait_for(lambda log: log.of(Op.SYNC_END, "Service"), "pod-a's resync", timeout=3.0)
    assert same.watcher.term > before
    assert other.watcher.term == 0
    assert {e.term for e in events.events} == {same.watcher.term}
    assert await holder(bus) == "pod-a"


async def test_a_watcher_that_loses_its_lease_stops_publishing_and_resyncs_when_it_leads_again(
    tmp_path: Path, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    directory = tmp_path / "config"
    write(directory / "a.yaml", service_yaml("a"))
    run = await start_watcher(directory, instance_id="pod-a", lease_ttl=1.5)
    first = await events.wait_sync_end()
    term = run.watcher.term
    assert first.term == term > 0

    # Someone else writes the lease (a successor after this one was paused): the next renewal is refused.
    await bus.leases.put(LEASE, b"pod-b")
    await eventually(lambda: _true(run.watcher.lease.lost.is_set()), what="the renewal refused")
    write(directory / "b.yaml", service_yaml("b"))  # seen by nobody until someone leads

    # The successor goes away: this one leads again, under a newer term, with a full resync.
    await bus.leases.delete(LEASE)
    await events.wait_for(lambda log: len(log.of(Op.SYNC_END, "Service")) >= 2, "the new term's resync")
    assert run.watcher.term > term
    assert {e.term for e in events.of(Op.UPSERT, "Service", "default/b")} == {run.watcher.term}
    newer = [e for e in events.events if e.term == run.watcher.term]
    assert newer[0].op is Op.SYNC_BEGIN
    assert {e.key for e in newer if e.op is Op.UPSERT and e.kind == "Service"} == {"default/a", "default/b"}


async def _true(value: bool) -> bool:
    await asyncio.sleep(0)
    return value


async def test_only_a_first_acquisition_takes_a_lease_back(bus: Bus) -> None:
    """Two live processes sharing an identity by mistake: the second takes the lease once, and the first,
    having lost it, waits like any standby instead of taking it back in turn, forever."""
    stop = asyncio.Event()
    first = Lease(bus, LEASE, "pod-a", 1.5, reclaim=True)
    second = Lease(bus, LEASE, "pod-a", 1.5, reclaim=True)
    assert await first.acquire(stop)
    assert await second.acquire(stop)  # at once: the entry names its identity
    await eventually(lambda: _true(first.lost.is_set()), what="the first one's renewal refused")
    waiting = asyncio.create_task(first.acquire(stop))
    try:
        renewed = second.term

        async def renewed_twice() -> bool:
            nonlocal renewed
            entry = await bus.leases.get(LEASE)
            if entry.revision and entry.revision > renewed:
                renewed = entry.revision
                return entry.revision > second.term + 1
            return False

        await eventually(renewed_twice, what="the second one renewing")
        assert not waiting.done()
    finally:
        stop.set()
        assert await waiting is False
        await second.release()
