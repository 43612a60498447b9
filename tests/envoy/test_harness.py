"""The real-Envoy harness and the ADS bootstrap, against a minimal fake ADS server (no edge needed): what
the e2e tests rely on works, and the invalid cluster they publish is one Envoy really rejects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.fake_ads import FakeAds, cluster, load_assignment, route_config, serve_demo
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, ROUTE
from xdsbus_dev.echo import EchoIdentity, EchoServer
from xdsbus_dev.envoy_bootstrap import ads_bootstrap, parse_address
from xdsbus_dev.harness.envoy import Envoy
from xdsbus_dev.harness.processes import eventually, free_port

API_TYPES = ["GRPC", "DELTA_GRPC"]


@pytest.fixture
async def backends() -> AsyncIterator[dict[str, EchoServer]]:
    servers = {
        name: await EchoServer(EchoIdentity(pod=f"{name}-x-y", namespace="test", service=name)).start()
        for name in ("one", "two")
    }
    yield servers
    for server in servers.values():
        await server.stop()


@pytest.fixture
async def ads() -> AsyncIterator[FakeAds]:
    server = await FakeAds().start()
    yield server
    await server.stop()


def endpoints(backends: dict[str, EchoServer]) -> dict[str, tuple[str, int]]:
    return {name: ("127.0.0.1", server.port) for name, server in backends.items()}


async def pod_of(envoy: Envoy, host: str) -> str:
    response = await envoy.get("/", host=host)
    assert response.status == 200, response.text
    return str(response.json()["pod"])


@pytest.mark.parametrize("api_type", API_TYPES)
async def test_envoy_takes_its_configuration_from_ads(
    tmp_path: Path, ads: FakeAds, backends: dict[str, EchoServer], api_type: str
) -> None:
    gateway = free_port()
    await serve_demo(ads, listener_port=gateway, backends=endpoints(backends))
    envoy = Envoy(tmp_path, [f"127.0.0.1:{ads.port}"], api_type=api_type, gateway_port=gateway)  # type: ignore[arg-type]
    async with envoy:
        await envoy.wait_ready(listeners=[f"0.0.0.0_{gateway}"])
        assert envoy.node_id in ads.nodes
        assert await pod_of(envoy, "one.test") == "one-x-y"
        assert await pod_of(envoy, "two.test") == "two-x-y"
        assert (await envoy.get("/", host="nobody.test")).status == 404

        versions = await envoy.versions()
        assert {"cluster/one", "cluster/two", f"listener/0.0.0.0_{gateway}", f"route/http.{gateway}"} <= set(
            versions
        )
        stats = await envoy.stats()
        assert stats["cluster_manager.cds.update_success"] >= 1
        assert stats["listener_manager.lds.update_success"] >= 1
        assert stats["listener_manager.total_listeners_draining"] == 0
        assert await envoy.connected_edges() == [f"127.0.0.1:{ads.port}"]

        # An endpoint change moves traffic.
        await ads.set(
            load_assignment("one", ("127.0.0.1", backends["two"].port)), type_url=ENDPOINT, replace=False
        )

        async def moved() -> bool:
            return await pod_of(envoy, "one.test") == "two-x-y"

        await eventually(moved, timeout=10, what="host one.test served by backend two")
    assert envoy.proc is not None and envoy.proc.returncode is not None


@pytest.mark.parametrize("api_type", API_TYPES)
async def test_invalid_cluster_is_nacked_and_the_last_good_config_serves(
    tmp_path: Path, ads: FakeAds, backends: dict[str, EchoServer], api_type: str
) -> None:
    """The e2e NACK test publishes a cluster with lb_policy 99: Envoy rejects it on proto validation."""
    gateway = free_port()
    await serve_demo(ads, listener_port=gateway, backends=endpoints(backends))
    async with Envoy(tmp_path, [f"127.0.0.1:{ads.port}"], api_type=api_type, gateway_port=gateway) as envoy:  # type: ignore[arg-type]
        await envoy.wait_ready(listeners=[f"0.0.0.0_{gateway}"])
        before = await envoy.versions()
        bad = cluster("one")
        bad.lb_policy = 99  # type: ignore[assignment]
        await ads.set(bad, cluster("two"), type_url=CLUSTER)

        async def nacked() -> bool:
            return any(n.type_url == CLUSTER for n in ads.nacks)

        await eventually(nacked, timeout=10, what="a NACK of the invalid cluster")
        assert "LbPolicy" in ads.nacks[0].message
        assert await envoy.stat("cluster_manager.cds.update_rejected") == 1
        assert (await envoy.versions())["cluster/one"] == before["cluster/one"]
        assert await pod_of(envoy, "one.test") == "one-x-y"


@pytest.mark.parametrize("api_type", API_TYPES)
async def test_envoy_fails_over_to_another_edge(
    tmp_path: Path, backends: dict[str, EchoServer], api_type: str
) -> None:
    """The bootstrap's `xds` cluster lists every edge: when the one Envoy streams from dies, it reconnects to
    another; with identical versions there, nothing changes."""
    gateway = free_port()
    servers = [await FakeAds().start(), await FakeAds().start()]
    try:
        for server in servers:
            await serve_demo(server, listener_port=gateway, backends=endpoints(backends))
        addresses = [f"127.0.0.1:{s.port}" for s in servers]
        async with Envoy(tmp_path, addresses, api_type=api_type, gateway_port=gateway) as envoy:  # type: ignore[arg-type]
            await envoy.wait_ready(listeners=[f"0.0.0.0_{gateway}"])
            connected = await envoy.connected_edges()
            assert len(connected) == 1
            first = addresses.index(connected[0])
            before_versions = await envoy.versions()
            before = await envoy.stats()

            await servers[first].stop()

            async def reconnected() -> bool:
                return await envoy.connected_edges() == [addresses[1 - first]] and bool(
                    await envoy.stat("control_plane.connected_state")
                )

            await eventually(reconnected, timeout=15, what="Envoy streaming from the other ADS server")
            assert envoy.node_id in servers[1 - first].nodes

            async def acked_there() -> bool:
                return len(servers[1 - first].acks) >= 2

            await eventually(acked_there, timeout=10, what="the reconnected stream ACKing")
            after = await envoy.stats()
            for name in (
                "cluster_manager.cluster_modified",
                "cluster_manager.cluster_added",
                "listener_manager.listener_modified",
                "listener_manager.listener_added",
            ):
                assert after.get(name, 0) == before.get(name, 0), name
            assert after["listener_manager.total_listeners_draining"] == 0
            assert await envoy.versions() == before_versions
            assert await pod_of(envoy, "one.test") == "one-x-y"
    finally:
        for server in servers:
            await server.stop()


async def test_a_route_added_later_serves(
    tmp_path: Path, ads: FakeAds, backends: dict[str, EchoServer]
) -> None:
    gateway = free_port()
    await serve_demo(ads, listener_port=gateway, backends={"one": ("127.0.0.1", backends["one"].port)})
    async with Envoy(tmp_path, [f"127.0.0.1:{ads.port}"], gateway_port=gateway) as envoy:
        await envoy.wait_ready(listeners=[f"0.0.0.0_{gateway}"])
        assert (await envoy.get("/", host="two.test")).status == 404
        await ads.set(cluster("two"), type_url=CLUSTER, replace=False)
        await ads.set(
            load_assignment("two", ("127.0.0.1", backends["two"].port)), type_url=ENDPOINT, replace=False
        )
        await ads.set(
            route_config(gateway, [("one.test", "/", "one"), ("two.test", "/", "two")]), type_url=ROUTE
        )

        async def serving() -> bool:
            response = await envoy.get("/", host="two.test")
            return response.status == 200 and response.json()["pod"] == "two-x-y"

        await eventually(serving, timeout=10, what="the new route serving")


def test_bootstrap_shape() -> None:
    boot = ads_bootstrap(
        edges=[("127.0.0.1", 18000), ("127.0.0.1", 18001)],
        admin_port=19000,
        scope="team-a",
        api_type="DELTA_GRPC",
    )
    assert boot["node"]["metadata"] == {"XDSBUS_SCOPE": "team-a"}
    assert boot["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert boot["dynamic_resources"]["cds_config"] == {"ads": {}, "resource_api_version": "V3"}
    xds = boot["static_resources"]["clusters"][0]
    ports = [
        e["endpoint"]["address"]["socket_address"]["port_value"]
        for e in xds["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]
    assert ports == [18000, 18001]
    with pytest.raises(ValueError):
        ads_bootstrap(edges=[], admin_port=1)
    assert parse_address("127.0.0.1:18000") == ("127.0.0.1", 18000)
    assert parse_address("[::1]:5") == ("::1", 5)
    with pytest.raises(ValueError):
        parse_address("nope")


async def test_envoy_validates_the_generated_bootstrap(tmp_path: Path) -> None:
    """`envoy --mode validate` accepts both variants of the bootstrap."""
    for api_type in API_TYPES:
        envoy = Envoy(tmp_path, ["127.0.0.1:1", "127.0.0.1:2"], api_type=api_type)  # type: ignore[arg-type]
        envoy.extra_args = ["--mode", "validate"]
        envoy.start()
        assert await envoy.wait_exit() == 0, envoy.output()
