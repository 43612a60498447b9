"""EurekaRegistry against the fake Eureka server: full fetch and resync, deltas as upserts and deletes,
the hashcode check, XML-only servers, the /eureka/v2 prefix, outages and malformed instances."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakes.eureka_server import FakeEureka
from tests.watch_eureka.conftest import POLL, NoCredentials, RecordingSink, StartRun, config_for
from xdsbus.model.mcpbridge import RegistryConfig, Vport, VportService
from xdsbus.model.registry import RegistryEndpoint
from xdsbus_watch_eureka import EurekaRegistry
from xdsbus_watch_eureka.registry import EurekaError

ORDERS = "ORDER-SERVICE.eureka"


@pytest.mark.parametrize("xml", [False, True], ids=["json", "xml-only-server"])
async def test_resync_then_deltas(eureka: FakeEureka, start_run: StartRun, xml: bool) -> None:
    # A server that ignores Accept (force_xml) is read the same way.
    eureka.force_xml = xml
    eureka.register("order-service", "o1", "10.0.0.1", 8080, metadata={"protocol": "grpc", "zone": "z1"})
    eureka.register("order-service", "o2", "10.0.0.2", 8080)
    eureka.register("billing_svc", "b1", "10.0.1.1", 9000)
    run = await start_run()
    sink = run.sink

    assert sink.calls == [("resync", ["BILLING-SVC.eureka", ORDERS])]
    orders = sink.services[ORDERS]
    assert (orders.registry_type, orders.registry, orders.service) == ("eureka", "main", "ORDER-SERVICE")
    assert (orders.port, orders.protocol) == (8080, "GRPC")
    assert orders.endpoints == [
        RegistryEndpoint(
            address="10.0.0.1", port=8080, zone="z1", metadata={"protocol": "grpc", "zone": "z1"}
        ),
        RegistryEndpoint(address="10.0.0.2", port=8080),
    ]
    assert sink.services["BILLING-SVC.eureka"].protocol == "HTTP"
    assert {r.accept for r in eureka.requests} == {"application/json"}
    assert run.registry.prefix == "/eureka"

    # Registration → upsert through the delta (the hashcode matches: no full fetch).
    eureka.register("order-service", "o3", "10.0.0.3", 8080)
    await sink.wait_for(lambda: len(sink.services[ORDERS].endpoints) == 3, "o3 upserted")
    # Status DOWN → the endpoint stays, unhealthy.
    eureka.set_status("order-service", "o2", "DOWN")
    await sink.wait_for(lambda: ("10.0.0.2", 8080, False) in sink.endpoints(ORDERS), "o2 unhealthy")
    # Cancel → the instance goes; the last instance → the service is deleted.
    eureka.cancel("order-service", "o3")
    await sink.wait_for(lambda: len(sink.services[ORDERS].endpoints) == 2, "o3 removed")
    eureka.cancel("billing_svc", "b1")
    await sink.wait_for(lambda: "BILLING-SVC.eureka" not in sink.services, "billing deleted")

    # The delta repeats its 3-minute window on every poll: nothing is published twice, but every poll
    # counts as an answer (the source lag of /metrics).
    answers = sink.answers
    await run.polls(3)
    assert sink.answers >= answers + 3
    assert sink.calls[1:] == [
        ("upsert", ORDERS),
        ("upsert", ORDERS),
        ("upsert", ORDERS),
        ("delete", "BILLING-SVC.eureka"),
    ]
    assert run.registry.full_fetches == 1
    assert sink.problems == []


async def test_hashcode_mismatch_fetches_everything(eureka: FakeEureka, start_run: StartRun) -> None:
    eureka.register("orders", "o1", "10.0.0.1", 80)
    run = await start_run()
    sink = run.sink

    # Changes older than the delta window: only the hashcode tells.
    eureka.register("orders", "o2", "10.0.0.2", 80)
    eureka.register("stock", "s1", "10.0.2.1", 80)
    eureka.forget_recent_changes()
    await sink.wait_for(lambda: len(sink.ops("resync")) == 2, "a resync after the mismatch")
    assert sink.ops("resync")[1] == ["ORDERS.eureka", "STOCK.eureka"]
    assert len(sink.services["ORDERS.eureka"].endpoints) == 2
    assert run.registry.full_fetches == 2

    # A garbled hashcode does the same, and the next poll is back to deltas.
    eureka.corrupt_delta_hashcode()
    await sink.wait_for(lambda: len(sink.ops("resync")) == 3, "a resync after the corrupt hashcode")
    await run.polls(2)
    assert run.registry.full_fetches == 3
    assert not sink.ops("upsert") and not sink.ops("delete")


async def test_delta_refused_falls_back_to_full_fetches(eureka: FakeEureka, start_run: StartRun) -> None:
    eureka.delta_disabled = True
    eureka.register("orders", "o1", "10.0.0.1", 80)
    run = await start_run()
    eureka.register("orders", "o2", "10.0.0.2", 80)
    await run.sink.wait_for(
        lambda: len(run.sink.services["ORDERS.eureka"].endpoints) == 2, "o2 by full fetch"
    )
    assert run.registry.full_fetches >= 2


async def test_v2_prefix_is_found() -> None:
    async with FakeEureka(prefix="/eureka/v2") as server:
        server.register("orders", "o1", "10.0.0.1", 80)
        registry = EurekaRegistry(config_for(server), NoCredentials(), poll_interval=POLL)
        sink = RecordingSink()
        task = asyncio.create_task(registry.run(sink))
        try:
            await sink.wait_for(lambda: sink.ops("resync"), "resync")
            assert sink.ops("resync") == [["ORDERS.eureka"]]
            assert registry.prefix == "/eureka/v2"
            server.register("orders", "o2", "10.0.0.2", 80)
            await sink.wait_for(lambda: sink.ops("upsert"), "upsert via /eureka/v2/apps/delta")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        paths = [r.path for r in server.requests]
        assert paths[:2] == ["/eureka/apps", "/eureka/v2/apps"] and "/eureka/v2/apps/delta" in paths


async def test_outage_deletes_nothing_and_the_next_run_resyncs(
    eureka: FakeEureka, start_run: StartRun
) -> None:
    eureka.register("orders", "o1", "10.0.0.1", 80)
    eureka.register("stock", "s1", "10.0.2.1", 80)
    run = await start_run()

    await eureka.go_down()
    assert isinstance(await run.failure(), EurekaError)
    # Meanwhile (the machinery keeps the last state and backs off) the registry changes.
    eureka.cancel("stock", "s1")
    eureka.register("orders", "o2", "10.0.0.2", 80)
    # A server that answers errors fails the run too.
    await eureka.come_back()
    eureka.failing = 503
    failed = await start_run(registry=run.registry, sink=run.sink)
    assert "HTTP 503" in str(await failed.failure())
    eureka.failing = None

    again = await start_run(registry=run.registry, sink=run.sink)
    assert run.sink.ops("delete") == [] and run.sink.ops("upsert") == []
    assert run.sink.ops("resync") == [["ORDERS.eureka", "STOCK.eureka"], ["ORDERS.eureka"]]
    assert len(run.sink.services["ORDERS.eureka"].endpoints) == 2
    assert not again.task.done()


async def test_malformed_instances_are_reported_and_the_rest_kept(
    eureka: FakeEureka, start_run: StartRun
) -> None:
    eureka.register("orders", "o1", "10.0.0.1", 80)
    eureka.garbage("orders", "bad-ip", ipAddr="orders.internal")
    eureka.garbage("orders", "bad-port", ipAddr="10.0.0.9", port={"$": "eighty", "@enabled": "true"})
    eureka.garbage("ghosts", "g1", ipAddr="")
    run = await start_run()
    sink = run.sink

    assert sink.ops("resync") == [["ORDERS.eureka"]]
    assert sink.endpoints("ORDERS.eureka") == [("10.0.0.1", 80, True)]
    assert sorted(what for what, _ in sink.problems) == ["GHOSTS/g1", "ORDERS/bad-ip", "ORDERS/bad-port"]
    assert "'orders.internal' is not an IP address" in dict(sink.problems)["ORDERS/bad-ip"]

    # Garbage arriving by delta: reported once although the window repeats it, the rest published, and
    # no full fetch (the malformed instances still count in the hashcode, as on the server).
    eureka.garbage("orders", "bad-protocol", ipAddr="10.0.0.7", port={"$": 80, "@enabled": "true"},
                   metadata={"protocol": "dubbo"})  # fmt: skip
    eureka.register("orders", "o2", "10.0.0.2", 80)
    await sink.wait_for(lambda: len(sink.services["ORDERS.eureka"].endpoints) == 3, "o2 and bad-protocol")
    await run.polls(3)
    assert [what for what, _ in sink.problems].count("ORDERS/bad-protocol") == 1
    assert len(sink.problems) == 4
    assert run.registry.full_fetches == 1

    # Cancelling the garbage leaves the app (and, for an app of garbage only, nothing to publish).
    eureka.cancel("orders", "bad-ip")
    eureka.cancel("ghosts", "g1")
    await run.polls(2)
    assert run.registry.full_fetches == 1 and sink.ops("delete") == []


async def test_vport_and_secure_only_instances(eureka: FakeEureka, start_run: StartRun) -> None:
    eureka.register("orders", "o1", "10.0.0.1", 80)
    eureka.register(
        "secure", "s1", "10.0.3.1", 8080, port_enabled=False, secure_port=8443, secure_port_enabled=True
    )
    vport = Vport(default=0, services=[VportService(name="Orders", value=8000)])
    run = await start_run(vport=vport)
    orders, secure = run.sink.services["ORDERS.eureka"], run.sink.services["SECURE.eureka"]
    assert (orders.port, orders.endpoints[0].port) == (8000, 80)
    assert (secure.port, secure.protocol, secure.endpoints[0].port) == (8443, "HTTPS", 8443)


async def test_a_registry_without_domain_fails() -> None:
    registry = EurekaRegistry(RegistryConfig(type="eureka", name="x"), NoCredentials(), poll_interval=POLL)
    with pytest.raises(EurekaError, match="no domain"):
        await registry.run(RecordingSink())
