"""`ConsulRegistry` against the fake Consul agent, reporting to an in-test sink."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fakes.consul_server import FakeConsul
from tests.watch_consul.conftest import Creds, Sink, registry, running
from xdsbus.model.registry import RegistryEndpoint
from xdsbus_watch_consul import ConsulError, ConsulRegistry
from xdsbus_watch_consul.registry import (
    DEFAULT_REFRESH_INTERVAL,
    TokenBucket,
    aggregated_status,
    next_index,
    parse_protocol,
)

from .conftest import config

WEB = "web.dc1.consul"
API = "api.dc1.consul"
CONSUL = "consul.dc1.consul"


def seed(fake: FakeConsul) -> None:
    fake.register(
        "web", "web-1", "10.0.0.1", 8080, tags=["v1"], meta={"protocol": "http", "zone": "a"}, weight=3
    )
    # No service address: the node's address is the instance's.
    fake.register("web", "web-2", "", 8081, tags=["v2"], node="worker-2", node_address="10.0.1.2")
    fake.register("api_v2", "apiv2-1", "10.0.0.9", 9090, meta={"protocol": "GRPC"})


async def test_resync_content_and_hostnames(fake: FakeConsul) -> None:
    seed(fake)
    sink = Sink()
    async with running(registry(fake), sink):
        assert sink.events[0] == ("resync", ["api-v2.dc1.consul", CONSUL, WEB])
        web = sink.state[WEB]
        assert (web.registry_type, web.registry, web.service, web.port, web.protocol) == (
            "consul",
            "main",
            "web",
            8080,  # the first instance's port
            "HTTP",
        )
        assert web.endpoints == [
            RegistryEndpoint(
                address="10.0.0.1", port=8080, weight=3, metadata={"protocol": "http", "zone": "a"}
            ),
            RegistryEndpoint(address="10.0.1.2", port=8081),
        ]
        api = sink.state["api-v2.dc1.consul"]  # `_` made DNS-safe, as Higress does
        assert (api.service, api.protocol, api.port) == ("api_v2", "GRPC", 9090)
        assert sink.state[CONSUL].port == 8300
        assert sink.problems == []


async def test_registrations_and_deregistrations_are_upserted_and_a_vanished_service_deleted(
    fake: FakeConsul,
) -> None:
    seed(fake)
    sink = Sink()
    async with running(registry(fake), sink):
        fake.register("web", "web-3", "10.0.0.3", 8082, node="worker-3")
        await sink.until(lambda: len(sink.state[WEB].endpoints) == 3)
        fake.deregister("web-1")
        await sink.until(lambda: ("10.0.0.1", 8080) not in sink.endpoints(WEB))
        # The port follows the first passing instance.
        assert sink.state[WEB].port == 8081

        fake.register("api", "api-9", "10.0.0.7", 7000, meta={"protocol": "http2"})
        await sink.until(lambda: API in sink.state)
        assert sink.state[API].protocol == "HTTP2"

        fake.deregister("api-9")  # its last instance: the service leaves the catalog
        await sink.until(lambda: API not in sink.state)
        assert ("delete", API) in sink.events
        assert sink.kinds().count(("upsert", WEB)) == 2


async def test_only_passing_instances_and_the_last_set_is_kept_when_none_pass(fake: FakeConsul) -> None:
    seed(fake)
    sink = Sink()
    async with running(registry(fake), sink):
        fake.set_status("web-1", "critical")
        await sink.until(lambda: sink.endpoints(WEB) == [("10.0.1.2", 8081)])
        fake.set_status("web-1", "passing")
        fake.set_status("web-2", "warning")  # warning is not passing either
        await sink.until(lambda: sink.endpoints(WEB) == [("10.0.0.1", 8080)])
        fake.set_status("web-2", "passing")
        fake.set_status("web-1", "maintenance")
        await sink.until(lambda: sink.endpoints(WEB) == [("10.0.1.2", 8081)])

        mark = len(sink.events)
        fake.set_status("web-2", "critical")  # now none passes: Higress keeps the last endpoints
        # Once the watcher blocks on the new index, it has taken in the all-critical answer.
        await _until(lambda: _blocked_at(fake, "web", fake.service_index("web")))
        assert sink.kinds(mark) == []
        assert sink.endpoints(WEB) == [("10.0.1.2", 8081)]

        fake.set_status("web-1", "passing")
        await sink.until(lambda: sink.endpoints(WEB) == [("10.0.0.1", 8080)])


async def test_a_service_with_no_passing_instance_is_not_created_but_kept_across_runs(
    fake: FakeConsul,
) -> None:
    fake.register("db", "db-1", "10.0.0.4", 5432, status="critical")
    seed(fake)
    reg, sink = registry(fake), Sink()
    async with running(reg, sink):
        assert "db.dc1.consul" not in sink.state
        fake.set_status("web-1", "critical")
        fake.set_status("web-2", "critical")
    # The next run (after a failure, say) still holds the last endpoints of web.
    second = Sink()
    async with running(reg, second):
        assert sorted(second.endpoints(WEB)) == [("10.0.0.1", 8080), ("10.0.1.2", 8081)]


async def test_weights_and_protocols(fake: FakeConsul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080, weight=10, meta={"protocol": "dubbo"})
    fake.register("web", "web-2", "10.0.0.2", 8080, weight=1)
    sink = Sink()
    async with running(registry(fake), sink):
        web = sink.state[WEB]
        assert [e.weight for e in web.endpoints] == [10, 1]
        assert web.protocol == "HTTP"
        assert sink.problems == [
            (
                "service web instance web-1",
                "protocol 'dubbo' is not one of HTTP, HTTP2, GRPC, HTTPS, GRPCS; HTTP used",
            )
        ]
        fake.register("web", "web-2", "10.0.0.2", 8080, weight=4)
        await sink.until(lambda: [e.weight for e in sink.state[WEB].endpoints] == [10, 4])


async def test_tag_filter(fake: FakeConsul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080, tags=["Public", "v1"])
    fake.register("api", "api-1", "10.0.0.2", 9000, tags=["internal"])
    sink = Sink()
    async with running(registry(fake, consul_service_tag=" PUBLIC "), sink):
        assert sink.events[0] == ("resync", [WEB])
        fake.register("api", "api-2", "10.0.0.3", 9000, tags=["public"])  # the service gains the tag
        await sink.until(lambda: API in sink.state)
        # Higress filters services, not instances: api-1 comes along.
        assert sorted(sink.endpoints(API)) == [("10.0.0.2", 9000), ("10.0.0.3", 9000)]
        fake.deregister("api-2")  # and loses it
        await sink.until(lambda: API not in sink.state)


async def test_acl_token_from_the_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    # py-consul prefers CONSUL_HTTP_TOKEN over the token it is given; the watcher's token must win.
    monkeypatch.setenv("CONSUL_HTTP_TOKEN", "from-the-environment")
    async with FakeConsul(token="s3cret") as fake:
        seed(fake)
        creds = Creds({"consul-auth": {"consulToken": "s3cret"}})
        sink = Sink()
        async with running(registry(fake, creds, auth_secret_name="consul-auth"), sink):
            assert WEB in sink.state
        monkeypatch.delenv("CONSUL_HTTP_TOKEN")

        wrong = Creds({"consul-auth": {"consulToken": "guess"}})
        with pytest.raises(ConsulError, match=r"403 ACL not found.*Secret consul-auth"):
            await registry(fake, wrong, auth_secret_name="consul-auth").run(Sink())

        # A Secret without the key: reported, then the anonymous token sees nothing (default deny).
        anonymous = Sink()
        async with running(
            registry(fake, Creds({"consul-auth": {}}), auth_secret_name="consul-auth"), anonymous
        ):
            assert anonymous.events[-1] == ("resync", [])
            assert anonymous.problems == [
                ("secret consul-auth", "has no key consulToken; connecting without an ACL token")
            ]


async def test_names_that_cannot_be_hostnames_are_reported(fake: FakeConsul) -> None:
    fake.register("a_b", "ab-1", "10.0.0.1", 80)
    fake.register("a-b", "ab-2", "10.0.0.2", 80)
    fake.register("bad name", "bad-1", "10.0.0.3", 80)
    sink = Sink()
    async with running(registry(fake), sink):
        assert sink.events[-1] == ("resync", ["a-b.dc1.consul", CONSUL])
        assert sink.endpoints("a-b.dc1.consul") == [("10.0.0.2", 80)]  # the first name by sort order
        assert sink.problems == [
            ("service a_b", "has the same hostname a-b.dc1.consul as a-b; skipped"),
            ("service 'bad name'", "is not usable as a hostname label; skipped"),
        ]


async def test_datacenter_is_sent_and_an_unknown_one_fails() -> None:
    async with FakeConsul(datacenter="eu-west") as fake:
        fake.register("web", "web-1", "10.0.0.1", 8080)
        sink = Sink()
        async with running(registry(fake), sink):
            assert "web.eu-west.consul" in sink.state
        assert all(q.get("dc") == "eu-west" for _, path, q in fake.requests if path.startswith("/v1/"))
        with pytest.raises(ConsulError, match="No path to datacenter"):
            await registry(fake, consul_datacenter="mars").run(Sink())


async def test_blocking_queries_block_and_wake_on_change(fake: FakeConsul) -> None:
    seed(fake)
    sink = Sink()
    async with running(registry(fake), sink):
        # One catalog query and one health query per service are parked at the agent.
        watched = 4
        await _until_requests(fake, 2 * watched)  # the first answers, then the blocked ones
        before = len(fake.requests)
        await asyncio.sleep(1.0)  # a quiet second, measured: not a synchronisation
        assert len(fake.requests) == before, fake.requests[before:]
        assert all(int(q["index"]) >= 1 for _, _, q in fake.requests[watched:])

        started = time.monotonic()
        fake.set_status("web-1", "critical")
        await sink.until(lambda: len(sink.state[WEB].endpoints) == 1)
        assert time.monotonic() - started < 2.0  # at once, not after a wait or a poll interval
        # The change cost one answer and one new blocked query for that service only.
        await _until_requests(fake, before + 1)
        assert len(fake.requests) == before + 1
        assert fake.requests[-1][1] == "/v1/health/service/web"


async def test_an_index_going_backwards_resets_to_zero(fake: FakeConsul) -> None:
    seed(fake)
    sink = Sink()
    async with running(registry(fake), sink):
        await _until_requests(fake, 8)
        high = fake.service_index("web")
        mark = len(fake.requests)
        fake.restore_snapshot(5)  # a snapshot restore: every index drops below what clients hold
        await _until(
            lambda: any(q.get("index") is None for _, p, q in fake.requests[mark:] if p.endswith("/web"))
        )
        # After the reset the watcher blocks on the new, lower index, so the next change (index 6 < the
        # old index) is seen; a watcher still blocking on the old index would miss it.
        fake.register("web", "web-3", "10.0.0.3", 8080)
        assert fake.service_index("web") < high
        await sink.until(lambda: len(sink.state[WEB].endpoints) == 3)


async def test_outage_deletes_nothing_and_the_next_run_resyncs(fake: FakeConsul) -> None:
    seed(fake)
    reg, sink = registry(fake), Sink()
    async with running(reg, sink) as task:
        await fake.go_down()
        with pytest.raises(ConsulError, match="unreachable"):
            await task
    assert [e for e in sink.events if e[0] == "delete"] == []
    assert WEB in sink.state

    fake.deregister("apiv2-1")  # gone while the watcher was away
    fake.register("web", "web-3", "10.0.0.3", 8080)
    with pytest.raises(ConsulError, match="unreachable"):
        await reg.run(sink)  # still down: connection refused
    await fake.come_back()
    again = Sink()
    async with running(reg, again):
        # The resync lists what is there now, so api_v2, removed meanwhile, goes.
        assert again.events == [("resync", [CONSUL, WEB])]
        assert len(again.state[WEB].endpoints) == 3


async def test_malformed_entries_are_reported_and_the_rest_kept(fake: FakeConsul) -> None:
    seed(fake)
    sink = Sink()
    async with running(registry(fake), sink):
        good = fake.health_body("web")
        bad_port = fake.health_body("web")[0]
        bad_port["Service"].update(ID="web-9", Port="http")
        fake.garbage("web", [*good, bad_port, {"Service": None}, "nonsense"])
        await sink.until(lambda: len(sink.problems) >= 3)
        assert sink.problems == [
            ("service web instance web-9", "Service.Port 'http' is not a port number; skipped"),
            ("service web instance entry 3", "entry has no Service object; skipped"),
            ("service web instance entry 4", "entry is not an object; skipped"),
        ]
        assert len(sink.state[WEB].endpoints) == 2

        # A body that is not JSON at all: reported, the last endpoints stay.
        fake.garbage("web", "<html>502 Bad Gateway</html>")
        await sink.until(lambda: any("Failed to decode JSON" in reason for _, reason in sink.problems))
        assert len(sink.state[WEB].endpoints) == 2
        fake.garbage("web", None)
        fake.set_status("web-1", "critical")
        await sink.until(lambda: len(sink.state[WEB].endpoints) == 1)

        # A catalog that is not a catalog deletes nothing.
        fake.garbage(None, ["not", "a", "map"])
        await sink.until(lambda: any(what == "catalog" for what, _ in sink.problems))
        fake.garbage(None, None)
        fake.register("api", "api-1", "10.0.0.5", 9000)
        await sink.until(lambda: API in sink.state)
        assert [e for e in sink.events if e[0] == "delete"] == []


async def test_garbage_that_keeps_coming_is_polled_at_the_rate_limit(fake: FakeConsul) -> None:
    seed(fake)
    sink = Sink()
    reg = ConsulRegistry(config(fake), Creds(), refresh_interval=30.0, churn_interval=0.25, burst=2)
    async with running(reg, sink):
        fake.garbage("web", "not json")
        await sink.until(lambda: sink.problems)
        mark = fake.count("/v1/health/service/web")
        await asyncio.sleep(1.0)  # measured: a burst of 2, then one request per 0.25 s; not a busy loop
        assert fake.count("/v1/health/service/web") - mark <= 7


def test_refresh_interval_from_the_config() -> None:
    fake = FakeConsul()
    assert ConsulRegistry(config(fake), Creds()).refresh_interval == DEFAULT_REFRESH_INTERVAL
    assert ConsulRegistry(config(fake, consul_refresh_interval=int(60e9)), Creds()).refresh_interval == 60
    assert ConsulRegistry(config(fake, consul_refresh_interval=int(1e9)), Creds()).refresh_interval == 10
    reg = ConsulRegistry(config(fake, domain="https://consul.example/", port=0), Creds())
    assert reg.url == "https://consul.example:8500"
    assert ConsulRegistry(config(fake, consul_datacenter=""), Creds()).hostname("a_b") == "a-b..consul"


def test_index_rules() -> None:
    assert next_index(0, 42) == 42
    assert next_index(42, 42) == 42
    assert next_index(42, 50) == 50
    assert next_index(42, 7) == 0  # backwards: reset
    assert next_index(0, 0) == 1  # never block on 0


def test_aggregated_status_follows_the_go_client() -> None:
    def check(status: str, check_id: str = "service:x") -> dict[str, str]:
        return {"CheckID": check_id, "Status": status}

    assert aggregated_status([]) == "passing"
    assert aggregated_status(None) == "passing"
    assert aggregated_status([check("passing"), check("warning")]) == "warning"
    assert aggregated_status([check("warning"), check("critical")]) == "critical"
    assert aggregated_status([check("passing", "_node_maintenance")]) == "maintenance"
    assert aggregated_status([check("critical"), check("passing", "_service_maintenance:x")]) == "maintenance"
    assert aggregated_status([check("bogus")]) == ""


def test_protocols() -> None:
    assert [parse_protocol(p) for p in ("http", "GRPC", " https ", "http2", "grpcs", "tcp")] == [
        "HTTP",
        "GRPC",
        "HTTPS",
        "HTTP2",
        "GRPCS",
        None,
    ]


async def test_token_bucket_allows_a_burst_then_limits() -> None:
    bucket = TokenBucket(2, 0.1)
    started = time.monotonic()
    for _ in range(4):
        await bucket.take()
    # Two at once, then one per 0.1 s.
    assert 0.18 < time.monotonic() - started < 1.0


def _blocked_at(fake: FakeConsul, service: str, index: int) -> bool:
    """Whether a health query of `service` blocking on `index` (or later) was made."""
    path = f"/v1/health/service/{service}"
    return any(p == path and int(q.get("index", 0)) >= index for _, p, q in fake.requests)


async def _until_requests(fake: FakeConsul, count: int) -> None:
    await _until(lambda: len(fake.requests) >= count)


async def _until(probe: object, timeout: float = 5.0) -> None:
    """Poll a synchronous condition on the fake's request log."""
    assert callable(probe)
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)
