"""The fake Consul agent driven by the real py-consul asyncio client (and raw HTTP where headers matter)."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections.abc import AsyncIterator

import aiohttp
import consul
import consul.aio
import pytest
from consul.exceptions import BadRequest

from tests.fakes.consul_server import FakeConsul, parse_go_duration


def client(fake: FakeConsul, token: str | None = None) -> consul.aio.Consul:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # py-consul's aiohttp arguments
        return consul.aio.Consul(host="127.0.0.1", port=fake.port, token=token)


@pytest.fixture
async def fake() -> AsyncIterator[FakeConsul]:
    async with FakeConsul(jitter=False) as server:
        yield server


@pytest.fixture
async def c(fake: FakeConsul) -> AsyncIterator[consul.aio.Consul]:
    cl = client(fake)
    yield cl
    await cl.close()


async def test_catalog_and_health_shapes(fake: FakeConsul, c: consul.aio.Consul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080, tags=["v1"], meta={"protocol": "http"}, weight=3)
    fake.register("web", "web-2", "", 8081, tags=["v2"], node="worker-2", node_address="10.1.0.2")

    index, services = await c.catalog.services()
    assert isinstance(index, str) and int(index) >= 1  # py-consul hands the header over as a string
    assert services == {"consul": [], "web": ["v1", "v2"]}

    _, entries = await c.health.service("web")
    assert [e["Service"]["ID"] for e in entries] == ["web-1", "web-2"]  # sorted by node, then ID
    first, second = entries
    assert first["Service"]["Weights"] == {"Passing": 3, "Warning": 1}
    assert first["Service"]["Meta"] == {"protocol": "http"}
    assert second["Service"]["Meta"] is None  # a nil map, as Consul encodes it
    assert second["Service"]["Address"] == "" and second["Node"]["Address"] == "10.1.0.2"
    assert [ch["CheckID"] for ch in first["Checks"]] == ["serfHealth", "service:web-1"]
    assert first["Node"]["Datacenter"] == "dc1"

    # The Consul servers' own service, as in every datacenter.
    _, servers = await c.health.service("consul")
    assert servers[0]["Service"]["Port"] == 8300 and servers[0]["Checks"][0]["CheckID"] == "serfHealth"
    assert await c.status.leader() == "127.0.0.1:8300"


async def test_response_headers(fake: FakeConsul) -> None:
    async with aiohttp.ClientSession() as http, http.get(f"{fake.url}/v1/catalog/services") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("application/json")
        assert resp.headers["X-Consul-Index"] == str(fake.catalog_index())
        assert resp.headers["X-Consul-KnownLeader"] == "true"
        assert resp.headers["X-Consul-LastContact"] == "0"
        assert resp.headers["X-Consul-Default-Acl-Policy"] == "allow"


async def test_blocking_query_wakes_on_change_and_times_out_with_the_same_index(
    fake: FakeConsul, c: consul.aio.Consul
) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080)
    index, _ = await c.health.service("web")

    async def change_soon() -> None:
        await asyncio.sleep(0.2)
        fake.set_status("web-1", "critical")

    started = time.monotonic()
    changer = asyncio.create_task(change_soon())
    new_index, entries = await c.health.service("web", index=index, wait="5s")
    await changer
    assert 0.15 < time.monotonic() - started < 2
    assert int(new_index) > int(index)
    assert entries[0]["Checks"][1]["Status"] == "critical"

    # Nothing changes: after the wait, 200 with the same index and body.
    started = time.monotonic()
    same_index, same = await c.health.service("web", index=new_index, wait="300ms")
    assert 0.28 < time.monotonic() - started < 2
    assert same_index == new_index and same == entries

    # Changes to another service do not move this one's index; the catalog index moves only on
    # registrations, not check changes.
    catalog_index, _ = await c.catalog.services()
    fake.register("api", "api-1", "10.0.0.2", 9000)
    fake.set_status("web-1", "passing")
    assert fake.catalog_index() > int(catalog_index)
    assert fake.service_index("api") > int(new_index)
    before = fake.catalog_index()
    fake.set_status("api-1", "warning")
    assert fake.catalog_index() == before < fake.service_index("api")


async def test_index_zero_never_blocks_and_bad_parameters_are_rejected(
    fake: FakeConsul, c: consul.aio.Consul
) -> None:
    started = time.monotonic()
    index, _ = await c.catalog.services(index=0, wait="10s")
    assert time.monotonic() - started < 1 and int(index) >= 1
    async with aiohttp.ClientSession() as http:
        for query, reason in (("index=x", "Invalid index"), ("index=5&wait=10", "Invalid wait time")):
            async with http.get(f"{fake.url}/v1/catalog/services?{query}") as resp:
                assert (resp.status, await resp.text()) == (400, reason)
        # Consul CE refuses Enterprise tenancy, by header or parameter.
        async with http.get(f"{fake.url}/v1/catalog/services", headers={"X-Consul-Namespace": "t"}) as resp:
            assert resp.status == 400 and "Enterprise" in await resp.text()
        async with http.get(f"{fake.url}/v1/health/service/web?partition=p") as resp:
            assert resp.status == 400 and "Enterprise" in await resp.text()
    with pytest.raises(BadRequest, match="filter"):
        await c.health.service("web", filter_expr="Service.Port == 1")


async def test_unknown_service_answers_empty_with_the_extinction_index(
    fake: FakeConsul, c: consul.aio.Consul
) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080)
    fake.deregister("web-1")
    index, entries = await c.health.service("web")
    assert entries == [] and int(index) == fake.service_index("web") == fake.service_index("never")


async def test_passing_and_tag_filters_and_maintenance(fake: FakeConsul, c: consul.aio.Consul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080, tags=["a", "b"])
    fake.register("web", "web-2", "10.0.0.2", 8080, tags=["a"], status="warning")
    fake.register("web", "web-3", "10.0.0.3", 8080, tags=["b"], status="maintenance")
    _, passing = await c.health.service("web", passing=True)
    assert [e["Service"]["ID"] for e in passing] == ["web-1"]
    _, tagged = await c.health.service("web", tag=["a", "b"])
    assert [e["Service"]["ID"] for e in tagged] == ["web-1"]
    _, everything = await c.health.service("web")
    maint = everything[2]["Checks"]
    assert [(ch["CheckID"], ch["Status"]) for ch in maint][1] == ("_service_maintenance:web-3", "critical")


async def test_acl_tokens(fake: FakeConsul) -> None:
    del fake
    async with FakeConsul(token="s3cret") as secured:
        secured.register("web", "web-1", "10.0.0.1", 8080)
        good, anonymous, wrong = client(secured, "s3cret"), client(secured), client(secured, "nope")
        try:
            _, services = await good.catalog.services()
            assert services == {"consul": [], "web": []}
            # The anonymous token under default deny reads a filtered, empty catalog, and cannot write.
            _, hidden = await anonymous.catalog.services()
            assert hidden == {}
            _, no_entries = await anonymous.health.service("web")
            assert no_entries == []
            with pytest.raises(consul.ACLPermissionDenied, match="Permission denied"):
                await anonymous.agent.service.register("api", port=9000)
            with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
                await wrong.catalog.services()
            with pytest.raises(consul.ACLPermissionDenied, match="ACL not found"):
                await wrong.health.service("web", index=1, wait="10s")  # refused before blocking
            # py-consul sends X-Consul-Token; Authorization: Bearer is accepted too.
            async with (
                aiohttp.ClientSession() as http,
                http.get(
                    f"{secured.url}/v1/catalog/services", headers={"Authorization": "Bearer s3cret"}
                ) as resp,
            ):
                assert "web" in await resp.json()
                assert resp.headers["X-Consul-Default-Acl-Policy"] == "deny"
        finally:
            for cl in (good, anonymous, wrong):
                await cl.close()


async def test_datacenter_parameter(fake: FakeConsul, c: consul.aio.Consul) -> None:
    _, services = await c.catalog.services(dc="dc1")
    assert "consul" in services
    with pytest.raises(consul.ConsulException, match="No path to datacenter"):
        await c.health.service("web", dc="dc9")


async def test_agent_register_and_deregister(fake: FakeConsul, c: consul.aio.Consul) -> None:
    assert await c.agent.service.register(
        "api", service_id="api-1", port=9000, tags=["x"], meta={"protocol": "grpc"}, weights={"Passing": 5}
    )
    index, entries = await c.health.service("api")
    service = entries[0]["Service"]
    assert (service["Port"], service["Tags"], service["Meta"], service["Weights"]["Passing"]) == (
        9000,
        ["x"],
        {"protocol": "grpc"},
        5,
    )
    assert service["Address"] == "" and entries[0]["Node"]["Address"] == "127.0.0.1"
    # Re-registering the same content writes nothing.
    await c.agent.service.register(
        "api", service_id="api-1", port=9000, tags=["x"], meta={"protocol": "grpc"}, weights={"Passing": 5}
    )
    assert str(fake.service_index("api")) == index
    # A new check starts critical, unless its definition says otherwise.
    await c.agent.service.register("db", service_id="db-1", port=5432, check=consul.Check.ttl("10s"))
    _, db = await c.health.service("db")
    assert db[0]["Checks"][-1]["Status"] == "critical"

    assert await c.agent.service.deregister("api-1") is True
    _, gone = await c.health.service("api")
    assert gone == []
    assert await c.agent.service.deregister("api-1") is False  # 404 Unknown service ID


async def test_snapshot_restore_moves_the_index_backwards_and_wakes_blockers(
    fake: FakeConsul, c: consul.aio.Consul
) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080)
    index, _ = await c.health.service("web")
    blocked = asyncio.create_task(c.health.service("web", index=index, wait="10s"))
    await _until(lambda: fake.count("/v1/health/service/web") == 2)
    fake.restore_snapshot(3)
    lower, entries = await asyncio.wait_for(blocked, 2)
    assert int(lower) == 3 < int(index)
    assert entries[0]["Service"]["ID"] == "web-1"  # the content survives


async def test_outage_cuts_blocked_queries_and_refuses_connections(
    fake: FakeConsul, c: consul.aio.Consul
) -> None:
    index, _ = await c.catalog.services()
    blocked = asyncio.create_task(c.catalog.services(index=index, wait="10s"))
    await _until(lambda: fake.count("/v1/catalog/services") == 2)
    await fake.go_down()
    with pytest.raises(aiohttp.ClientError):
        await asyncio.wait_for(blocked, 2)
    with pytest.raises(aiohttp.ClientConnectionError):
        await c.catalog.services()
    fake.register("web", "web-1", "10.0.0.1", 8080)  # the catalog lives on
    await fake.come_back()
    _, services = await c.catalog.services()
    assert "web" in services


async def test_garbage_is_served_until_cleared(fake: FakeConsul, c: consul.aio.Consul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080)
    index, _ = await c.health.service("web")
    fake.garbage("web", "<html>oops</html>")
    with pytest.raises(consul.ConsulException, match="Failed to decode JSON"):
        await c.health.service("web", index=index, wait="10s")
    fake.garbage("web", [{"Service": "not an object"}])
    _, data = await c.health.service("web")
    assert data == [{"Service": "not an object"}]
    fake.garbage("web", None)
    after, entries = await c.health.service("web")
    assert int(after) > int(index) and entries[0]["Service"]["ID"] == "web-1"
    fake.garbage(None, "[1, 2")
    with pytest.raises(consul.ConsulException, match="Failed to decode JSON"):
        await c.catalog.services()


def test_go_durations() -> None:
    assert parse_go_duration("30s") == 30
    assert parse_go_duration("1m30s") == 90
    assert parse_go_duration("250ms") == pytest.approx(0.25)
    assert parse_go_duration("0") == 0
    for bad in ("10", "", "s", "1x"):
        with pytest.raises(ValueError):
            parse_go_duration(bad)


async def _until(probe: object, timeout: float = 5.0) -> None:
    """Poll a synchronous condition of the fake (its request log) until it holds."""
    assert callable(probe)
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
