"""NacosRegistry against the fake Nacos through the real nacos-sdk-python client: resync, pushes, service
list polling, mapping, credentials, garbage and outages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from tests.fakes.nacos_server import FakeNacos
from tests.watch_nacos.conftest import RecordingSink, Secrets, StartRun
from xdsbus.model.mcpbridge import Vport, VportService
from xdsbus_watch_nacos.client import NacosUnavailable
from xdsbus_watch_nacos.registry import NacosConfigError

HOST_A = "svc-a.DEFAULT-GROUP.public.nacos"


async def test_resync_lists_the_configured_groups(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc-a", "10.0.0.2", 8080, metadata={"version": "v1"})
    fake.register("svc-a", "10.0.0.1", 8080)
    fake.register("order_svc", "10.0.1.1", 9090, group="PAY_GROUP")
    fake.register("ignored", "10.0.2.1", 80, group="OTHER")  # group not configured
    fake.register("consumers:com.demo.Api::", "10.0.3.1", 0)  # Dubbo consumer: never subscribed
    fake.create_service("empty")  # listed, no instance: not published
    run = await start_run(nacos_groups=["DEFAULT_GROUP", "PAY_GROUP"])

    assert run.sink.ops("resync") == [["order_svc.PAY-GROUP.public.nacos", HOST_A]]
    a = run.sink.services[HOST_A]
    assert (a.registry_type, a.registry, a.service, a.port, a.protocol) == (
        "nacos2",
        "prod",
        "svc-a",
        8080,
        "HTTP",
    )
    assert run.sink.endpoints(HOST_A) == [("10.0.0.1", 8080, 1, True), ("10.0.0.2", 8080, 1, True)]
    assert a.endpoints[1].metadata == {"version": "v1"}
    assert fake.subscribers("consumers:com.demo.Api::") == 0
    assert fake.subscribers("svc-a") == 1 and fake.subscribers("empty") == 1
    assert run.sink.problems == []


async def test_namespace_id_and_namespace_name(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc", "10.0.0.1", 80, namespace="ns-1")
    fake.register("svc", "10.9.9.9", 80)  # public: not ours
    run = await start_run(nacos_namespace_id="ns-1", nacos_namespace="team_a")
    # nacosNamespace names the host (`_` -> `-` in the suffix); the id is where services are listed.
    assert run.sink.ops("resync") == [["svc.DEFAULT-GROUP.team-a.nacos"]]
    assert {r.body["namespace"] for r in fake.requests_of("ServiceListRequest")} == {"ns-1"}
    assert {r.body["namespace"] for r in fake.requests_of("SubscribeServiceRequest")} == {"ns-1"}


async def test_no_groups_discover_nothing(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    run = await start_run(nacos_groups=[])
    assert run.sink.ops("resync") == [[]]
    assert fake.requests_of("ServiceListRequest") == []


async def test_pushes_become_upserts_and_the_last_instance_a_delete(
    fake: FakeNacos, start_run: StartRun
) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    run = await start_run()
    sink = run.sink

    fake.register("svc-a", "10.0.0.2", 8080, weight=2.6)
    await sink.wait_for(lambda: len(sink.services[HOST_A].endpoints) == 2, "the added instance")
    assert sink.endpoints(HOST_A) == [("10.0.0.1", 8080, 1, True), ("10.0.0.2", 8080, 3, True)]

    fake.set_healthy("svc-a", "10.0.0.2", 8080, False)
    await sink.wait_for(lambda: not sink.services[HOST_A].endpoints[1].healthy, "the unhealthy instance")

    fake.register("svc-a", "10.0.0.1", 8080, weight=0.0)  # re-registration replaces; weight 0 -> 1
    fake.deregister("svc-a", "10.0.0.2", 8080)
    await sink.wait_for(lambda: len(sink.services[HOST_A].endpoints) == 1, "the removed instance")
    assert sink.endpoints(HOST_A) == [("10.0.0.1", 8080, 1, True)]

    fake.deregister("svc-a", "10.0.0.1", 8080)  # empty push: the service has nothing left
    await sink.wait_for(lambda: HOST_A not in sink.services, "the delete")
    assert sink.ops("delete") == [HOST_A]
    fake.register("svc-a", "10.0.0.3", 8080)
    await sink.wait_for(lambda: HOST_A in sink.services, "the service coming back")
    assert sink.endpoints(HOST_A) == [("10.0.0.3", 8080, 1, True)]


async def test_services_added_and_removed_are_found_by_polling(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    run = await start_run()
    sink = run.sink
    answers = sink.answers
    fake.register("svc-b", "10.0.0.5", 7070)
    await sink.wait_for(lambda: "svc-b.DEFAULT-GROUP.public.nacos" in sink.services, "the new service")
    fake.remove_service("svc-a")
    await sink.wait_for(lambda: HOST_A not in sink.services, "the removed service")
    assert sink.ops("delete") == [HOST_A]
    # The empty push deleted it at once; the next list shows it gone and it is unsubscribed.
    await until(
        lambda: any(not r.body["subscribe"] for r in fake.requests_of("SubscribeServiceRequest")), fake
    )
    assert sink.ops("delete") == [HOST_A]
    # Each poll and push counted as an answer (the source lag of /metrics).
    assert sink.answers >= answers + 2


async def until(check: Callable[[], bool], fake: FakeNacos, timeout: float = 5.0) -> None:
    """Wait for a condition on the fake's state, woken by its changes."""

    async def loop() -> None:
        while not check():
            await fake.wait_changed()

    await asyncio.wait_for(loop(), timeout)


async def test_paging_over_many_services(fake: FakeNacos, start_run: StartRun) -> None:
    for i in range(120):
        fake.register(f"svc-{i:03}", f"10.0.{i}.1", 80)
    run = await start_run()
    assert len(run.sink.ops("resync")[0]) == 120
    pages = [r.body["pageNo"] for r in fake.requests_of("ServiceListRequest")][:3]
    assert pages == [1, 2, 3]


async def test_protocol_and_vport(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("grpc-svc", "10.0.0.1", 50051, metadata={"protocol": "triple"})
    fake.register("web", "10.0.0.2", 8080, metadata={"protocol": "HTTP"})
    fake.register("other", "10.0.0.3", 8081)
    vport = Vport(default=80, services=[VportService(name="WEB", value=8000)])
    run = await start_run(vport=vport)
    services = run.sink.services
    assert services["grpc-svc.DEFAULT-GROUP.public.nacos"].protocol == "GRPC"
    assert services["grpc-svc.DEFAULT-GROUP.public.nacos"].port == 80  # vport default
    assert services["web.DEFAULT-GROUP.public.nacos"].port == 8000  # per service, case-insensitive
    assert services["web.DEFAULT-GROUP.public.nacos"].endpoints[0].port == 8080  # endpoints keep theirs
    assert services["other.DEFAULT-GROUP.public.nacos"].protocol == "HTTP"


async def test_malformed_instances_are_problems_and_the_rest_is_published(
    fake: FakeNacos, start_run: StartRun
) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    fake.push_garbage("svc-a", {"ip": "not an ip", "port": 8080})
    run = await start_run()
    sink = run.sink
    assert sink.endpoints(HOST_A) == [("10.0.0.1", 8080, 1, True)]
    assert sink.problems == [(f"{HOST_A} instance 'not an ip':8080", "invalid address 'not an ip'")]

    fake.push_garbage("svc-a", {"ip": "10.0.0.9", "port": 70000})
    fake.push_garbage("svc-a", {"ip": "10.0.0.8", "port": 80, "weight": -2})
    fake.register("svc-a", "10.0.0.2", 8080)
    await sink.wait_for(lambda: len(sink.services[HOST_A].endpoints) == 2, "the good instance")
    await sink.wait_for(lambda: len(sink.problems) == 3, "the new problems")
    reasons = sorted(reason for _, reason in sink.problems)
    assert reasons == [
        "invalid address 'not an ip'",
        "invalid port 70000",
        "invalid weight -2.0 (Nacos allows 0..10000)",
    ]  # each reported once, not again on every push
    assert len(sink.ops("resync")) == 1

    # Once the garbage is gone a resync clears it from the registry status; nothing else changes.
    fake.clear_garbage("svc-a")
    await sink.wait_for(lambda: len(sink.ops("resync")) == 2, "the resync that clears the problems")
    assert sink.ops("resync")[1] == [HOST_A] and len(sink.problems) == 3
    assert len(sink.services[HOST_A].endpoints) == 2


async def test_hostname_collision_is_a_problem(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc", "10.0.0.1", 80, group="A_B")
    fake.register("svc", "10.0.0.2", 80, group="A-B")
    run = await start_run(nacos_groups=["A_B", "A-B"])
    assert run.sink.ops("resync") == [["svc.A-B.public.nacos"]]
    assert run.sink.endpoints("svc.A-B.public.nacos") == [("10.0.0.2", 80, 1, True)]  # "A-B" sorts first
    assert run.sink.problems == [("A_B/svc", "hostname svc.A-B.public.nacos already used by A-B/svc")]


async def test_instances_registered_by_higress_are_skipped(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    fake.register("svc-a", "10.0.0.2", 8080, metadata={"register-resource": "mcp-bridge"})
    fake.register("mcp-only", "10.0.0.3", 80, metadata={"register-resource": "mcp-bridge"})
    run = await start_run()
    assert run.sink.ops("resync") == [[HOST_A]]
    assert run.sink.endpoints(HOST_A) == [("10.0.0.1", 8080, 1, True)]


async def test_username_and_password_from_the_secret(start_run: StartRun) -> None:
    server = FakeNacos(username="nacos", password="s3cret")
    await server.start()
    try:
        server.register("svc-a", "10.0.0.1", 8080)
        creds = Secrets({("nacos-auth", "nacosUsername"): "nacos", ("nacos-auth", "nacosPassword"): "s3cret"})
        run = await start_run(server=server, credentials=creds, auth_secret_name="nacos-auth")
        assert run.sink.ops("resync") == [[HOST_A]]
        assert server.logins[0] == {"username": "nacos", "password": "s3cret"}

        wrong = Secrets({("nacos-auth", "nacosUsername"): "nacos", ("nacos-auth", "nacosPassword"): "nope"})
        run = await start_run(server=server, credentials=wrong, auth_secret_name="nacos-auth")
        assert "access token" in str(await run.failure())

        missing = await start_run(server=server, auth_secret_name="nacos-auth")
        assert isinstance(await missing.failure(), NacosConfigError)
    finally:
        await server.stop()


async def test_access_key_and_secret_key(start_run: StartRun) -> None:
    server = FakeNacos(secret_key="sk")
    await server.start()
    try:
        server.register("svc-a", "10.0.0.1", 8080)
        run = await start_run(server=server, nacos_access_key="ak", nacos_secret_key="sk")
        assert run.sink.ops("resync") == [[HOST_A]]
        assert server.requests_of("SubscribeServiceRequest")[0].headers["ak"] == "ak"
    finally:
        await server.stop()


async def test_address_server(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    # The fake's HTTP port plays the address server too; it answers 127.0.0.1, served on `port`.
    run = await start_run(domain="", nacos_address_server=f"http://127.0.0.1:{fake.http_port}")
    assert run.sink.ops("resync") == [[HOST_A]]


async def test_ipv6_domain_is_a_config_error(start_run: StartRun) -> None:
    run = await start_run(domain="::1")
    assert "IPv6" in str(await run.failure())


async def test_unreachable_server_fails_fast(fake: FakeNacos, start_run: StartRun) -> None:
    await fake.stop()
    run = await start_run()
    assert isinstance(await run.failure(timeout=4), NacosUnavailable)
    assert run.sink.calls == []


async def test_outage_ends_run_without_deleting_and_the_next_run_resyncs(
    fake: FakeNacos, start_run: StartRun
) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    fake.register("svc-b", "10.0.0.2", 8080)
    sink = RecordingSink()
    run = await start_run(sink=sink)
    await fake.go_down()
    assert isinstance(await run.failure(), NacosUnavailable)
    assert sink.ops("delete") == [] and set(sink.services) == {HOST_A, "svc-b.DEFAULT-GROUP.public.nacos"}

    # Meanwhile svc-b went away and svc-a gained an instance.
    fake.remove_service("svc-b")
    fake.register("svc-a", "10.0.0.3", 8080)
    await fake.come_back()
    await start_run(sink=sink)
    assert sink.ops("resync")[-1] == [HOST_A]
    assert [e[0] for e in sink.endpoints(HOST_A)] == ["10.0.0.1", "10.0.0.3"]


async def test_cancel_cleans_up_the_client(fake: FakeNacos, start_run: StartRun) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    before = asyncio.all_tasks()
    # Tests driving the raw client (tests/fakes) leave the SDK's handlers on this process-wide logger.
    handlers_before = set(logging.getLogger("naming").handlers)
    run = await start_run()
    assert len(fake.connections) == 1
    await run.stop()

    async def gone() -> None:
        while fake.connections:
            await fake.wait_changed()

    await asyncio.wait_for(gone(), 15)
    leftovers = [t for t in asyncio.all_tasks() - before if not t.done() and _sdk_task(t)]
    assert leftovers == []
    # The SDK's file handler is gone and its records reach the service's logging.
    naming = logging.getLogger("naming")
    added = [h for h in naming.handlers if h not in handlers_before]
    assert naming.propagate and not [h for h in added if isinstance(h, logging.FileHandler)]


def _sdk_task(task: asyncio.Task[object]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "/v2/nacos/" in code.co_filename


@pytest.mark.parametrize("registry_type", ["nacos", "nacos3"])
async def test_every_nacos_type_speaks_grpc(fake: FakeNacos, start_run: StartRun, registry_type: str) -> None:
    fake.register("svc-a", "10.0.0.1", 8080)
    run = await start_run(type=registry_type)
    assert run.sink.services[HOST_A].registry_type == registry_type
