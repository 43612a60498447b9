"""Supervisor and EventSink: registries started, restarted and stopped as McpBridge says, outages that
keep what was published, and what reaches the event log and KV xdsbus_status."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest

from tests.registry.support import Counts, World, folded, hostnames, op_counts, service, until
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryEndpoint
from xdsbus.registry.api import Credentials, Registry
from xdsbus.registry.sink import EventSink
from xdsbus.registry.status import RegistryStatus
from xdsbus.registry.supervisor import Supervisor
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.processes import eventually

ONE = "fake/one"


class StaticCredentials:
    """Credentials whose Secrets the test sets directly."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, str], str] = {}
        self.revisions: dict[str, str] = {}

    def get(self, secret_name: str, key: str) -> str | None:
        return self.values.get((secret_name, key))

    def revision(self, secret_name: str) -> str:
        return self.revisions.get(secret_name, "")


def config(name: str = "one", **fields: object) -> RegistryConfig:
    return msgspec.convert(
        {"type": "fake", "name": name, "domain": f"{name}.example.com", "port": 1, **fields}, RegistryConfig
    )


@pytest.fixture
async def supervisor(bus: Bus) -> AsyncIterator[tuple[Supervisor, World, StaticCredentials]]:
    world = World()
    creds = StaticCredentials()
    sup = Supervisor(bus, world.factory, creds, retry_base=0.05, retry_cap=0.2)
    yield sup, world, creds
    await sup.stop_all()


async def registry_status(bus: Bus, source: str) -> ObjectStatus | None:
    return await status_store.read(bus, "Registry", source, source)


async def holds(bus: Bus, source: str, expected: set[str]) -> None:
    async def probe() -> bool:
        assert await hostnames(bus, source) == expected
        return True

    await eventually(probe, timeout=10, what=f"{source} holding {sorted(expected)}")


async def test_registries_start_restart_on_change_and_are_cleared_when_removed(
    bus: Bus, supervisor: tuple[Supervisor, World, StaticCredentials]
) -> None:
    sup, world, creds = supervisor
    world.put(ONE, service("a"))
    world.put(ONE, service("b"))
    await sup.reconcile({ONE: config()})
    await holds(bus, ONE, {"a.fake", "b.fake"})
    world.put(ONE, service("c", "10.0.0.3"))  # a change the running client relays
    await holds(bus, ONE, {"a.fake", "b.fake", "c.fake"})

    # The same config again: nothing restarts.
    await sup.reconcile({ONE: config()})
    assert len(world.created) == 1
    # A changed config: stopped and recreated with it, as Higress does.
    await sup.reconcile({ONE: config(domain="moved.example.com")})
    await until(lambda: len(world.created) == 2, "a second client")
    assert [c.domain for c in world.created] == ["one.example.com", "moved.example.com"]
    # The Secret it reads credentials from changed: recreated too, so the new ones are used.
    creds.values[("auth", "nacosUsername")] = "alice"
    await sup.reconcile({ONE: config(domain="moved.example.com", authSecretName="auth")})
    await until(lambda: len(world.created) == 3, "a third client")
    creds.revisions["auth"] = "2"
    creds.values[("auth", "nacosUsername")] = "bob"
    await sup.reconcile({ONE: config(domain="moved.example.com", authSecretName="auth")})
    await until(lambda: len(world.created) == 4, "a fourth client")
    await until(lambda: world.credentials_seen.get(ONE) == "bob", "the new credentials")
    await until(lambda: world.running[ONE] == 1, "one running client")

    await eventually(lambda: registry_status(bus, ONE), timeout=10, what="registry status")
    await sup.reconcile({})
    assert sup.running == {}
    assert world.running[ONE] == 0
    await holds(bus, ONE, set())
    assert await registry_status(bus, ONE) is None, "a removed registry's status goes too"


async def test_an_outage_keeps_the_services_and_the_next_resync_removes_what_vanished(
    bus: Bus, supervisor: tuple[Supervisor, World, StaticCredentials]
) -> None:
    sup, world, _ = supervisor
    world.put(ONE, service("a"))
    world.put(ONE, service("b"))
    await sup.reconcile({ONE: config()})
    await holds(bus, ONE, {"a.fake", "b.fake"})

    world.fail(ONE)

    async def outage() -> ObjectStatus | None:
        status = await registry_status(bus, ONE)
        return status if status and status.state is Verdict.REJECTED else None

    status = await eventually(outage, timeout=10, what="the outage in the registry's status")
    assert "registry unreachable" in status.reason and "connection" in status.reason
    assert len(world.created) == 1, "the same client is retried"
    # Several retries failed meanwhile, and nothing was withdrawn.
    assert await hostnames(bus, ONE) == {"a.fake", "b.fake"}

    # While it was away, b went; when it is back its resync says so.
    world.remove(ONE, "b.fake", tell=False)
    world.down.discard(ONE)
    await holds(bus, ONE, {"a.fake"})

    async def accepted() -> bool:
        status = await registry_status(bus, ONE)
        return status is not None and status.state is Verdict.ACCEPTED

    await eventually(accepted, timeout=10, what="the status accepted again")
    translator = Translator()
    translator.full_build(await folded(bus))
    assert translator.table.get(CLUSTER, "outbound|8080||a.fake") is not None
    assert translator.table.get(ENDPOINT, "outbound|8080||a.fake") is not None
    assert translator.table.get(CLUSTER, "outbound|8080||b.fake") is None


async def test_a_failing_factory_is_retried(bus: Bus) -> None:
    world = World()
    attempts: list[RegistryConfig] = []

    def flaky(cfg: RegistryConfig, creds: Credentials) -> Registry:
        attempts.append(cfg)
        if len(attempts) < 3:
            raise ValueError("bad configuration for now")
        return world.factory(cfg, creds)

    sup = Supervisor(bus, flaky, StaticCredentials(), retry_base=0.01, retry_cap=0.05)
    world.put(ONE, service("a"))
    try:
        await sup.reconcile({ONE: config()})
        await holds(bus, ONE, {"a.fake"})
        assert len(attempts) == 3
    finally:
        await sup.stop_all()


# -- the sink --------------------------------------------------------------------------------------------


async def test_sink_publishes_changes_only_sorted_and_reports_problems(bus: Bus) -> None:
    status = RegistryStatus(bus, ONE)
    sink = EventSink(bus, config(), status)
    a = service("a", "10.0.0.2", "10.0.0.1")
    await sink.resync([a, service("b")])
    assert await op_counts(bus, ONE) == Counts(sync_begin=1, upsert=2, sync_end=1)
    stored = (await folded(bus)).objects["RegistryService"][ONE]["a.fake"].value()
    assert [ep["address"] for ep in stored["endpoints"]] == ["10.0.0.1", "10.0.0.2"]
    assert stored["registry_type"] == "fake" and stored["registry"] == "one"

    # A relist with nothing new publishes the resync markers only; an unchanged upsert nothing.
    await sink.resync([service("b"), a])
    await sink.upsert(a)
    assert await op_counts(bus, ONE) == Counts(sync_begin=2, upsert=2, sync_end=2)
    await sink.upsert(service("a", "10.0.0.3"))
    await sink.delete("b.fake")
    assert await op_counts(bus, ONE) == Counts(sync_begin=2, upsert=3, delete=1, sync_end=2)

    # Garbage is reported (a duplicate instance here) and shown until a later resync no longer has it.
    twice = msgspec.structs.replace(
        a, endpoints=[*a.endpoints, RegistryEndpoint(address="10.0.0.1", port=8080)]
    )
    await sink.resync([twice])
    status_seen = await eventually(lambda: _warned(bus), timeout=5, what="a warning in the status")
    assert "a.fake instance 10.0.0.1:8080: listed twice" in status_seen.warnings[0]
    sink.problem("x.fake", "instance 10.9.9.9 has no port")
    await sink.resync([a])  # the listing that found x's problem: kept
    await status.flush()
    kept = await registry_status(bus, ONE)
    assert kept is not None and len(kept.warnings) == 1
    await sink.resync([a])  # not reported again: gone
    await status.flush()
    cleared = await registry_status(bus, ONE)
    assert cleared is not None and cleared.warnings == []
    await status.close()


async def _warned(bus: Bus) -> ObjectStatus | None:
    status = await registry_status(bus, ONE)
    return status if status and status.warnings else None
