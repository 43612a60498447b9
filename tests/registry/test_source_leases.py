"""Each registry publishes under its source lease `watch.<type>.<name>` and its term (docs/design.md §4):
the supervisor runs a registry only while holding it, stops the registry at once when a renewal is
refused, and runs it again, with a full resync under a newer term, once the lease is free."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import msgspec
from nats.js.errors import KeyNotFoundError

from tests.registry.support import World, events_of, hostnames, service, until, until_async
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.registry.supervisor import Supervisor
from xdsbus_dev.harness.processes import eventually

ONE = "fake/one"
LEASE = "watch.fake.one"


class NoCredentials:
    def get(self, secret_name: str, key: str) -> str | None:
        return None

    def revision(self, secret_name: str) -> str:
        return ""


def config() -> RegistryConfig:
    return msgspec.convert(
        {"type": "fake", "name": "one", "domain": "one.example.com", "port": 1}, RegistryConfig
    )


async def test_a_registry_runs_under_its_source_lease_and_term(bus: Bus) -> None:
    world = World()
    world.put(ONE, service("a"))
    sup = Supervisor(
        bus,
        world.factory,
        NoCredentials(),
        retry_base=0.05,
        retry_cap=0.2,
        instance_id="pod-a",
        lease_ttl=1.5,
    )
    try:
        await sup.reconcile({ONE: config()})
        await until_async(lambda: _has(bus, {"a.fake"}), "a published")
        first = {e.term for e in await events_of(bus, ONE)}
        (term,) = first
        assert term > 0 and (await bus.leases.get(LEASE)).value == b"pod-a"

        # Another replica's write (its lease after this one was paused): the registry stops publishing.
        await bus.leases.put(LEASE, b"pod-b")
        await until(lambda: world.running[ONE] == 0, "the registry stopped")
        world.put(ONE, service("b"))
        assert await hostnames(bus, ONE) == {"a.fake"}

        # The lease is free again: the registry runs again, its first act a resync under a newer term.
        await bus.leases.delete(LEASE)
        await until_async(lambda: _has(bus, {"a.fake", "b.fake"}), "b published after the new term's resync")
        events = await events_of(bus, ONE)
        newer = [e for e in events if e.term != term]
        assert {e.term for e in newer} == {max(e.term for e in events)} and newer[0].op is Op.SYNC_BEGIN
        assert newer[0].term > term
        assert {e.key for e in newer if e.op is Op.UPSERT} == {"a.fake", "b.fake"}  # everything again
        assert all(e.term > term for e in events if e.key == "b.fake")
    finally:
        await sup.stop_all()
    await eventually(_released(bus), what="the lease handed back at stop")


async def _has(bus: Bus, expected: set[str]) -> bool:
    return await hostnames(bus, ONE) == expected


def _released(bus: Bus) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        try:
            await bus.leases.get(LEASE)
        except KeyNotFoundError:
            return True
        return False

    return probe
