"""Replicas of a registry watcher: one publishes, the others stand by and take over; the leader clears
what registries removed while nobody led left behind."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.registry.support import (
    Counts,
    Source,
    World,
    hostnames,
    mcpbridge,
    op_counts,
    registry,
    secret,
    service,
    until,
    until_async,
)
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.registry.bridge_follower import BridgeFollower
from xdsbus.registry.leadership import Leadership, lease_name
from xdsbus.registry.sink import EventSink
from xdsbus.registry.status import RegistryStatus
from xdsbus.registry.supervisor import Supervisor
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import NatsServer

BOX = SecretBox(b"k" * 32)
ONE = "fake/one"


class Replica:
    """One replica of a `watch-fake` service, in process, on its own NATS connection."""

    def __init__(self, bus: Bus, world: World, instance: str) -> None:
        self.bus = bus
        self.stop = asyncio.Event()
        self.follower = BridgeFollower(bus, {"fake"}, secret_box=BOX)
        self.supervisor = Supervisor(
            bus, world.factory, self.follower.credentials, stop=self.stop, retry_base=0.05, retry_cap=0.2
        )
        self.leadership = Leadership(
            bus,
            lease_name("watch-fake", "default"),
            instance,
            self.follower,
            self.supervisor,
            ttl=2.0,
            stop=self.stop,
        )
        self.tasks = [
            asyncio.create_task(self.follower.run(self.stop)),
            asyncio.create_task(self.leadership.run()),
        ]

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 15)


@pytest.fixture
async def second_bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    bus = await connect(BusSettings(url=nats_server.url), name="second replica")
    yield bus
    await bus.close()


async def test_two_replicas_publish_one_set_of_events_and_the_standby_takes_over(
    bus: Bus, second_bus: Bus
) -> None:
    cluster = Source(bus, "k8s/prod", secret_box=BOX)
    await cluster.put(secret("fake-auth", nacosUsername="alice"))
    await cluster.put(mcpbridge(registry("fake", "one", authSecretName="fake-auth"), registry("nacos", "n")))
    world = World()
    for name in ("a", "b", "c"):
        world.put(ONE, service(name))

    first = Replica(bus, world, "replica-1")
    await asyncio.wait_for(first.leadership.leading.wait(), 10)
    second = Replica(second_bus, world, "replica-2")
    try:
        await asyncio.wait_for(second.follower.ready.wait(), 10)
        await until(lambda: world.running[ONE] == 1, "the leader's registry running")
        assert await hostnames(bus, ONE) == {"a.fake", "b.fake", "c.fake"}
        assert world.credentials_seen[ONE] == "alice", "credentials from the sealed Secret"
        world.put(ONE, service("d"))
        await _holds(bus, {"a.fake", "b.fake", "c.fake", "d.fake"})
        assert not second.leadership.leading.is_set()
        assert second.supervisor.running == {}, "a standby runs no registry"
        assert len(world.created) == 1
        assert await op_counts(bus, ONE) == Counts(sync_begin=1, upsert=4, sync_end=1)

        await first.close()
        await asyncio.wait_for(second.leadership.leading.wait(), 10)
        await until(lambda: len(world.created) == 2 and world.running[ONE] == 1, "the standby's registry")

        async def resynced() -> bool:
            return (await op_counts(bus, ONE)).sync_end == 2

        await until_async(resynced, "the new leader's resync")
        # Its resync republishes every fact, stored again since message ids name publish attempts
        # (docs/design.md §4); the fold ignores what it already holds.
        assert await op_counts(bus, ONE) == Counts(sync_begin=2, upsert=8, sync_end=2)
        assert await hostnames(bus, ONE) == {"a.fake", "b.fake", "c.fake", "d.fake"}
    finally:
        await first.close()
        await second.close()


async def _holds(bus: Bus, expected: set[str]) -> None:
    async def probe() -> bool:
        return await hostnames(bus, ONE) == expected

    await until_async(probe, f"{ONE} holding {sorted(expected)}")


async def test_a_new_leader_clears_registries_removed_while_nobody_led(bus: Bus) -> None:
    # A previous run published two registries; since then McpBridge dropped `old`.
    for name in ("old", "kept"):
        cfg = RegistryConfig(type="fake", name=name)
        await EventSink(bus, cfg, RegistryStatus(bus, f"fake/{name}")).resync(
            [service("x", registry=f"fake/{name}")]
        )
    cleared = RegistryConfig(type="fake", name="cleared")
    await EventSink(bus, cleared, RegistryStatus(bus, "fake/cleared")).clear()
    await Source(bus, "k8s/prod").put(mcpbridge(registry("fake", "kept"), registry("fake", "new")))
    world = World()
    world.put("fake/new", service("y", registry="fake/new"))
    world.put("fake/kept", service("x", registry="fake/kept"))

    replica = Replica(bus, world, "replica-1")
    try:
        await until(lambda: replica.leadership.applied >= 1, "the first reconcile")

        async def settled() -> bool:
            return (
                await hostnames(bus, "fake/old") == set()
                and await hostnames(bus, "fake/new") == {"y.fake"}
                and await hostnames(bus, "fake/kept") == {"x.fake"}
            )

        await until_async(settled, "old cleared, new and kept running")
        # An already cleared source is not cleared again.
        assert await op_counts(bus, "fake/cleared") == Counts(sync_begin=1, sync_end=1)
    finally:
        await replica.close()


async def test_without_any_mcpbridge_in_the_log_nothing_is_cleared(bus: Bus) -> None:
    cfg = RegistryConfig(type="fake", name="old")
    await EventSink(bus, cfg, RegistryStatus(bus, "fake/old")).resync([service("x", registry="fake/old")])
    replica = Replica(bus, World(), "replica-1")
    try:
        await until(lambda: replica.leadership.applied >= 1, "the first reconcile")
        assert await hostnames(bus, "fake/old") == {"x.fake"}
        assert await op_counts(bus, "fake/old") == Counts(sync_begin=1, upsert=1, sync_end=1)
    finally:
        await replica.close()
