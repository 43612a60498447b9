"""Registry services end to end, without Kubernetes (one stack for the module): Nacos, Consul and Eureka
fakes, the `xdsbus-watch-nacos`, `-consul` and `-eureka` processes, an McpBridge manifest in watch-file's
directory naming the fakes, and Ingresses routing hosts to registry hostnames (backend: the McpBridge
resource, `higress.io/destination`), through the builder, an edge and a real Envoy to echo backends.

For each registry: a registered instance gets traffic and a deregistered one leaves the route without
endpoints (503); weights split traffic (Nacos, Consul; Eureka has none); during an outage traffic keeps
flowing to the last known endpoints and the registry's status says unreachable, and after it an instance
removed meanwhile gets no more traffic; a malformed instance is reported in the registry's status (KV and
`xdsbus status`) while the others keep serving; adding a registry to the McpBridge starts it and removing
it stops it and removes its services.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import Expect, cli_status, wait_all
from tests.fakes.consul_server import FakeConsul
from tests.fakes.eureka_server import FakeEureka
from tests.fakes.nacos_server import FakeNacos
from tests.support.registry_stack import (
    WATCHERS,
    ConsulDriver,
    EurekaDriver,
    NacosDriver,
    Pods,
    RegistryDriver,
    RegistryStack,
    mcpbridge,
    registry_ingress,
    start_pods,
)
from xdsbus_dev.harness.stack import edge_installed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

MCPBRIDGE_FILE = "mcpbridge.yaml"
# Each scenario has its own service (and pods, and host) in every registry, so tests do not interact.
# Scenario -> how many pods its service has.
SCENARIOS = {"reg": 1, "weighted": 2, "outage": 2, "garbage": 2, "extra": 1}
# How long traffic is watched during an outage.
OUTAGE_WATCH = 2.0


@dataclass
class Registries:
    """The stack, the fake registries (the main ones in the McpBridge, the extra ones added by a test)
    and each scenario's pods by (watcher, scenario)."""

    stack: RegistryStack
    main: dict[str, RegistryDriver]
    extra: dict[str, RegistryDriver]
    pods: dict[tuple[str, str], Pods]

    @staticmethod
    def host(kind: str, scenario: str) -> str:
        """The Ingress host routed to a scenario's service of one registry."""
        return f"{scenario}.{kind}.test"

    def bridge(self, *extra: RegistryDriver) -> dict[str, Any]:
        """The McpBridge naming the main registries and `extra`."""
        return mcpbridge([d.registry() for d in [*self.main.values(), *extra]])

    def driver(self, kind: str, scenario: str) -> RegistryDriver:
        """The fake registry holding a scenario's service (`extra`: the one added by the McpBridge test)."""
        return self.extra[kind] if scenario == "extra" else self.main[kind]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registries(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Registries]:
    """The fakes, the stack with the three watchers, every scenario's pods and Ingress, and the McpBridge
    naming the main registries; ready once each main registry resynced and every route is served."""
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with contextlib.AsyncExitStack() as exits:
        nacos = FakeNacos()
        await nacos.start()
        exits.push_async_callback(nacos.stop)
        consul = await exits.enter_async_context(FakeConsul(consul_service=False))
        consul_dc2 = await exits.enter_async_context(FakeConsul(datacenter="dc2", consul_service=False))
        eureka = await exits.enter_async_context(FakeEureka())
        eureka_extra = await exits.enter_async_context(FakeEureka())
        stack = RegistryStack(tmp_path_factory.mktemp("registries"))
        await exits.enter_async_context(stack)

        world = Registries(
            stack,
            main={
                "nacos": NacosDriver(nacos),
                "consul": ConsulDriver(consul),
                "eureka": EurekaDriver(eureka),
            },
            extra={
                "nacos": NacosDriver(nacos, "extra", group="EXTRA_GROUP"),
                "consul": ConsulDriver(consul_dc2, "extra"),
                "eureka": EurekaDriver(eureka_extra, "extra"),
            },
            pods={},
        )
        ingresses = []
        for kind in WATCHERS:
            for scenario, count in SCENARIOS.items():
                driver = world.driver(kind, scenario)
                if scenario == "weighted" and not driver.weighted:
                    continue
                pods = await start_pods(stack, f"{kind}-{scenario}", count)
                world.pods[kind, scenario] = pods
                ingresses.append(
                    registry_ingress(
                        f"{kind}-{scenario}", world.host(kind, scenario), driver.hostname(scenario), pods.port
                    )
                )
                # Known before the watchers start (see the drivers' `prepare`), except Consul's `reg`,
                # which must leave the catalog for its service to go: a Consul service whose passing
                # instances all go keeps its last endpoints (Higress).
                if scenario != "reg" or isinstance(driver, NacosDriver):
                    driver.prepare(scenario)
                # Registered from the start: the test's first change is the malformed instance, which the
                # Consul watcher's rate limit then lets through at once.
                if scenario == "garbage":
                    driver.register(scenario, pods[0])
                    driver.register(scenario, pods[1])
        stack.write("registry-ingresses.yaml", ingresses)
        stack.write(MCPBRIDGE_FILE, [world.bridge()])
        for kind in WATCHERS:
            stack.start_watcher(kind)
        for driver in world.main.values():
            await stack.wait_registry_status(driver.source, state="accepted", timeout=30)
        # Every route is served (no instance yet: no cluster, 503; `garbage` by its first pod), so later
        # answers come from the configuration the tests make.
        await wait_all(
            stack,
            [
                Expect(world.host(k, s), status=200, pod=f"{k}-{s}-") if s == "garbage" else
                Expect(world.host(k, s), status=503)
                for k, s in world.pods
            ],
        )  # fmt: skip
        yield world


def _pod(pods: Pods, index: int) -> str:
    """The pod name of `pods[index]`, as the echo backend answers it."""
    return str(pods[index].identity.pod)


@pytest.mark.parametrize("kind", WATCHERS)
async def test_a_registered_instance_serves_until_deregistered(registries: Registries, kind: str) -> None:
    """Registering an instance makes the route answer from it; deregistering it removes the service (and
    its cluster): the route answers 503."""
    stack, driver = registries.stack, registries.main[kind]
    pods, host = registries.pods[kind, "reg"], registries.host(kind, "reg")
    assert (await stack.sample(host, 1)) == {"HTTP 503": 1}  # nothing registered yet

    driver.register("reg", pods[0])
    await stack.wait_served_by(host, [_pod(pods, 0)])

    driver.deregister("reg", pods[0])
    await stack.wait_status_code(host, 503)  # the service is gone, and its cluster with it
    assert (await stack.sample(host, 5)) == {"HTTP 503": 5}


@pytest.mark.parametrize("kind", [k for k in WATCHERS if k != "eureka"])
async def test_weights_split_the_traffic(registries: Registries, kind: str) -> None:
    """Instance weights 1 and 3 (Nacos `weight`, Consul `Weights.Passing`) split 200 requests about 1:3."""
    stack, driver = registries.stack, registries.main[kind]
    pods, host = registries.pods[kind, "weighted"], registries.host(kind, "weighted")
    light, heavy = _pod(pods, 0), _pod(pods, 1)
    driver.register("weighted", pods[0], weight=1)
    driver.register("weighted", pods[1], weight=3)
    # Both seen: the last update (which carries both weights) has reached Envoy.
    await stack.wait_served_by(host, [light, heavy], n=40)

    counts = await stack.sample(host, 200)
    assert set(counts) == {light, heavy}, counts
    # 1:3 is 50 and 150; equal weights would give about 100 each.
    assert 25 <= counts[light] <= 75, counts
    assert counts[heavy] >= 125, counts


@pytest.mark.parametrize("kind", WATCHERS)
async def test_an_outage_keeps_the_last_endpoints_and_the_resync_applies_what_changed(
    registries: Registries, kind: str
) -> None:
    """While the registry is down its status says unreachable and both last known endpoints keep serving;
    an instance deregistered meanwhile gets no traffic once the registry is back and resynced."""
    stack, driver = registries.stack, registries.main[kind]
    pods, host = registries.pods[kind, "outage"], registries.host(kind, "outage")
    stays, leaves = _pod(pods, 0), _pod(pods, 1)
    driver.register("outage", pods[0])
    driver.register("outage", pods[1])
    await stack.wait_served_by(host, [stays, leaves])

    await driver.go_down()
    try:
        status = await stack.wait_registry_status(driver.source, state="rejected")
        assert status.reason.startswith("registry unreachable: "), status
        assert f"registry {driver.source} failed" in stack.watcher_log(kind)
        # Both last known endpoints keep serving while the registry is away.
        counts = await stack.keeps_serving(host, [stays, leaves], OUTAGE_WATCH)
        assert set(counts) == {stays, leaves}, counts
        # Removed while nobody can see it.
        driver.deregister("outage", pods[1])
    finally:
        await driver.come_back()

    await stack.wait_registry_status(driver.source, state="accepted", timeout=30)
    await stack.wait_served_by(host, [stays], timeout=30)
    assert (await stack.sample(host, 60)) == {stays: 60}


@pytest.mark.parametrize("kind", WATCHERS)
async def test_a_malformed_instance_is_reported_and_the_others_keep_serving(
    registries: Registries, kind: str
) -> None:
    """A malformed instance shows as a warning of the registry (KV and `xdsbus status`), which stays
    accepted, and the well-formed instances keep serving."""
    stack, driver = registries.stack, registries.main[kind]
    pods, host = registries.pods[kind, "garbage"], registries.host(kind, "garbage")
    good = {_pod(pods, 0), _pod(pods, 1)}
    await stack.wait_served_by(host, good)  # both registered by the fixture

    fragment = driver.add_garbage("garbage", pods[0])
    status = await stack.wait_registry_status(driver.source, warning=fragment)
    assert status.state == "accepted", status

    # As a user sees it. Polled: `xdsbus status` lists KV keys with nats-py's `keys()`, which can miss keys
    # while others are written (nats-io/nats.py#842); the CLI then finds no row and exits 1.
    async def cli_row() -> dict[str, Any]:
        (row,) = await cli_status(stack, f"Registry/{driver.source}")
        return row

    row = await stack.wait(cli_row, what=f"xdsbus status Registry/{driver.source}")
    assert row["state"] == "accepted", row
    assert any(fragment in w for w in row["warnings"]), row

    counts = await stack.sample(host, 40)
    assert set(counts) == good, counts


@pytest.mark.parametrize("kind", WATCHERS)
async def test_the_mcpbridge_starts_and_stops_a_registry(registries: Registries, kind: str) -> None:
    """A registry added to the McpBridge manifest is watched and its services routed; removed, its services
    go (503, though the instance is still registered), its status goes and its watch stops, while the
    watcher's main registry runs on."""
    stack, driver = registries.stack, registries.extra[kind]
    pods, host = registries.pods[kind, "extra"], registries.host(kind, "extra")
    pod = _pod(pods, 0)
    driver.register("extra", pods[0])
    assert await stack.registry_status(driver.source) is None  # not in the McpBridge: not watched
    assert (await stack.sample(host, 1)) == {"HTTP 503": 1}

    stack.write(MCPBRIDGE_FILE, [registries.bridge(driver)])
    await stack.wait_registry_status(driver.source, state="accepted")
    await stack.wait_served_by(host, [pod])
    if isinstance(driver, NacosDriver):
        assert driver.subscribers("extra") == 1

    stack.write(MCPBRIDGE_FILE, [registries.bridge()])
    await stack.wait_status_code(host, 503)  # the instance is still registered: the McpBridge decided
    await stack.wait_registry_status_gone(driver.source)
    assert f"registry {driver.source} removed from McpBridge" in stack.watcher_log(kind)
    if isinstance(driver, NacosDriver):
        # The registry's client closed its connection, and its subscriptions with it.
        async def unsubscribed() -> bool:
            return driver.subscribers("extra") == 0

        await stack.wait(unsubscribed, what="the extra registry's Nacos client closed")
    if isinstance(driver, EurekaDriver):
        # Its poller stopped: no request for ten poll intervals.
        asked = len(driver.fake.requests)
        await stack.holds(lambda: len(driver.fake.requests) == asked, 1.0, "the extra Eureka is not polled")
    # The main registry of the same watcher is untouched.
    main = await stack.registry_status(registries.main[kind].source)
    assert main is not None, registries.main[kind].source
    assert main.state == "accepted", main
