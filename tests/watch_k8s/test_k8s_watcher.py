"""The Kubernetes source against the fake API server and a real nats-server: what reaches the event log."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

from kubernetes_asyncio import client

from tests.fakes.kube_api import (
    GATEWAY_API_CRDS,
    GATEWAYCLASSES,
    HTTPROUTES,
    REFERENCEGRANTS_V1BETA1,
    WASMPLUGINS,
    FakeKubeApi,
)
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import (
    SYSTEM,
    StartWatcher,
    config_map,
    custom,
    ingress,
    ingress_class,
    install,
    install_higress_crds,
    last_sync_keys,
    secret,
    service,
    upserted_keys,
    wait_synced,
)
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.fold.state import FoldState, apply
from xdsbus.secretbox import SecretBox, is_sealed
from xdsbus_dev.harness.processes import eventually
from xdsbus_watch_k8s import K8sWatcher
from xdsbus_watch_k8s.status_writer import lease_name

CORE_KINDS = ("Service", "EndpointSlice", "Ingress", "IngressClass", "Secret", "ConfigMap")
B64 = base64.b64encode(b"pem").decode()


def endpoint_slice(name: str, service_name: str, namespace: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": True}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    }


def fold(log: EventLog) -> FoldState:
    """What the builder's fold makes of the events read so far."""
    state = FoldState()
    for seq, event in enumerate(log.events, start=1):
        apply(state, seq, event)
    return state


def folded_keys(log: EventLog, kind: str, source: str = "k8s/default") -> set[str]:
    return set(fold(log).objects.get(kind, {}).get(source, {}))


async def test_initial_list_publishes_every_kind(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    install_higress_crds(kube)
    install(kube, *GATEWAY_API_CRDS)
    web = service("web", "shop", labels={"app": "web"})
    web["metadata"]["managedFields"] = [{"manager": "kubectl", "operation": "Apply"}]
    web["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}", "keep": "me"}
    web["status"] = {"loadBalancer": {"ingress": [{"ip": "1.2.3.4"}]}}
    for obj in [
        web,
        endpoint_slice("web-abc", "web", "shop"),
        ingress("site", "shop"),
        ingress_class("higress"),
        secret("tls", "shop", type_="kubernetes.io/tls", tls_crt=B64, tls_key=B64),
        secret("ca", "shop", ca_crt=B64),
        secret("opaque", "shop", password=B64),  # neither TLS nor CA: not published
        secret("registry", SYSTEM, token=B64),  # everything in the system namespace is
        config_map("higress-config", higress="{}"),
        config_map("higress-https", cert="{}"),
        config_map("other"),  # not one of Higress' ConfigMaps
        config_map("higress-config", "shop"),  # not in the system namespace
        custom("networking.higress.io/v1", "McpBridge", "default", registries=[]),
        custom("networking.higress.io/v1", "McpBridge", "extra"),  # only `default` counts
        custom("extensions.higress.io/v1alpha1", "WasmPlugin", "auth", url="oci://x"),
        custom("extensions.higress.io/v1alpha1", "WasmPlugin", "elsewhere", "shop"),  # not in the system ns
        custom("networking.higress.io/v1", "Http2Rpc", "rpc"),
        custom(
            "gateway.networking.k8s.io/v1", "GatewayClass", "gw", None, controllerName="higress.io/gateway"
        ),
        custom("gateway.networking.k8s.io/v1", "Gateway", "gw", "shop", gatewayClassName="gw"),
        custom("gateway.networking.k8s.io/v1", "HTTPRoute", "r", "shop"),
        custom("gateway.networking.k8s.io/v1", "GRPCRoute", "g", "shop"),
        custom("gateway.networking.k8s.io/v1", "ReferenceGrant", "rg", "shop"),
    ]:
        kube.create(obj)

    await start_watcher()
    kinds = (*CORE_KINDS, "McpBridge", "WasmPlugin", "Http2Rpc", "GatewayClass", "Gateway", "HTTPRoute")
    await wait_synced(events, *kinds, "GRPCRoute", "ReferenceGrant")
    assert {e.source for e in events.events} == {"k8s/default"}
    expected = {
        "Service": {"shop/web"},
        "EndpointSlice": {"shop/web-abc"},
        "Ingress": {"shop/site"},
        "IngressClass": {"higress"},
        "Secret": {"shop/tls", "shop/ca", f"{SYSTEM}/registry"},
        "ConfigMap": {f"{SYSTEM}/higress-config", f"{SYSTEM}/higress-https"},
        "McpBridge": {f"{SYSTEM}/default"},
        "WasmPlugin": {f"{SYSTEM}/auth"},
        "Http2Rpc": {f"{SYSTEM}/rpc"},
        "GatewayClass": {"gw"},
        "Gateway": {"shop/gw"},
        "HTTPRoute": {"shop/r"},
        "GRPCRoute": {"shop/g"},
        "ReferenceGrant": {"shop/rg"},
    }
    for kind, keys in expected.items():
        assert upserted_keys(events, kind) == keys, kind
        assert sorted(last_sync_keys(events, kind) or []) == sorted(keys), kind
        # Each kind's list: its upserts as its pages arrive, then the resync's sync_begin and sync_end
        # (one epoch) naming them; a WasmPlugin waits for its module digest, so the resync sends it.
        ops = [e.op for e in events.events if e.kind == kind]
        if kind == "WasmPlugin":
            assert ops == [Op.SYNC_BEGIN] + [Op.UPSERT] * len(keys) + [Op.SYNC_END], kind
        else:
            assert ops == [Op.UPSERT] * len(keys) + [Op.SYNC_BEGIN, Op.SYNC_END], kind

    body = events.of(Op.UPSERT, "Service", "shop/web")[0].body
    assert body["apiVersion"] == "v1" and body["kind"] == "Service"  # list items come without them
    assert "status" not in body
    metadata = body["metadata"]
    assert set(metadata) == {"name", "namespace", "uid", "creationTimestamp", "labels", "annotations"}
    assert metadata["annotations"] == {"keep": "me"}
    assert body["spec"] == web["spec"]
    assert events.of(Op.UPSERT, "Ingress")[0].body["metadata"]["generation"] == 1
    assert events.of(Op.UPSERT, "McpBridge")[0].body["apiVersion"] == "networking.higress.io/v1"

    box = SecretBox.from_env()
    for event in events.of(Op.UPSERT, "Secret"):
        assert is_sealed(event.body)
    tls_event = events.of(Op.UPSERT, "Secret", "shop/tls")[0]
    tls = box.open(tls_event.body, source=tls_event.source, kind="Secret", key="shop/tls")
    assert tls["type"] == "kubernetes.io/tls" and tls["data"] == {"tls.crt": B64, "tls.key": B64}
    assert tls["kind"] == "Secret" and "resourceVersion" not in tls["metadata"]


async def test_changes_stream_and_status_writes_are_silent(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(service("web"))
    await start_watcher()
    await wait_synced(events, "Service")

    kube.create(service("api", port=8080))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "default/api"), "api created")
    updated = service("api", port=9090)
    kube.update(updated)
    await events.wait_for(lambda log: len(log.of(Op.UPSERT, "Service", "default/api")) == 2, "api updated")
    assert events.of(Op.UPSERT, "Service", "default/api")[1].body["spec"]["ports"][0]["port"] == 9090
    kube.delete("v1", "Service", "default", "api")
    await events.wait_for(lambda log: log.of(Op.DELETE, "Service", "default/api"), "api deleted")

    # A status write, and an update that only changes the resourceVersion (a no-op apply), publish nothing.
    kube.set_status("v1", "Service", "default", "web", {"loadBalancer": {"ingress": [{"ip": "9.9.9.9"}]}})
    same = kube.get("v1", "Service", "default", "web")
    assert same is not None
    same["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    kube.update(same)
    kube.create(service("marker"))  # the same watch stream: once it arrives, so has everything before
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "default/marker"), "marker")
    assert len(events.of(Op.UPSERT, "Service", "default/web")) == 1
    # Re-created with the same content after the delete: published again (a new message id).
    kube.create(service("api", port=9090))
    await events.wait_for(lambda log: len(log.of(Op.UPSERT, "Service", "default/api")) == 3, "api again")
    assert folded_keys(events, "Service") == {"default/web", "default/marker", "default/api"}


async def test_expired_watch_relists_as_a_resync(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(ingress("keep"))
    kube.create(ingress("gone"))
    run = await start_watcher()
    await wait_synced(events, "Ingress")
    assert upserted_keys(events, "Ingress") == {"default/keep", "default/gone"}

    # While the connection is down, one Ingress is deleted, another is added, and the history is
    # compacted: the watcher cannot resume (410) and must relist.
    kube.drop_watches()
    kube.delete("networking.k8s.io/v1", "Ingress", "default", "gone")
    kube.create(ingress("new"))
    kube.compact()

    await wait_synced(events, "Ingress", count=2)
    assert last_sync_keys(events, "Ingress") == ["default/keep", "default/new"]
    assert events.of(Op.DELETE, "Ingress") == []  # the resync's key list decides, not a delete event
    # Unchanged objects are not published again; the new one is.
    assert len(events.of(Op.UPSERT, "Ingress", "default/keep")) == 1
    assert events.of(Op.UPSERT, "Ingress", "default/new")
    assert folded_keys(events, "Ingress") == {"default/keep", "default/new"}
    assert run.loop("Ingress").lists == 2

    # And it keeps watching from the new list.
    kube.create(ingress("later"))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Ingress", "default/later"), "later")

    # A 410 as the HTTP status of the watch request (rather than an ERROR event) relists too.
    kube.fail_next(1, 410, match="/ingresses")
    kube.drop_watches()
    await wait_synced(events, "Ingress", count=3)
    assert last_sync_keys(events, "Ingress") == ["default/keep", "default/later", "default/new"]


async def test_bookmarks_keep_a_quiet_kind_from_relisting(bus: Bus, events: EventLog) -> None:
    # No periodic bookmarks: the test sends them when it wants them.
    async with FakeKubeApi(bookmark_interval=3600) as kube:
        kube.create(ingress("quiet"))
        watcher = K8sWatcher(bus, client.Configuration(host=kube.url), retry_cap=0.5, stop=asyncio.Event())
        task = asyncio.create_task(watcher.run())
        try:
            await wait_synced(events, "Ingress", "Service")
            for i in range(3):  # other kinds move the resourceVersion on
                kube.create(service(f"s{i}"))
            await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "default/s2"), "services")
            ingresses = next(loop for loop in watcher.loops if loop.feed.kind == "Ingress")
            assert ingresses.resource_version is not None
            assert int(ingresses.resource_version) < int(kube.resource_version)

            seen = watcher.source_seen_at
            kube.send_bookmarks()
            await eventually(
                lambda: _true(ingresses.resource_version == kube.resource_version), what="the bookmark"
            )
            # A bookmark changes nothing but is an answer: the source lag of /metrics counts from it.
            assert watcher.source_seen_at > seen
            kube.compact()
            kube.drop_watches()
            kube.create(ingress("after"))
            await events.wait_for(lambda log: log.of(Op.UPSERT, "Ingress", "default/after"), "after")
            # The bookmark's RV is not older than the compaction: the Ingress watch resumed, no relist.
            assert ingresses.lists == 1
            assert len(events.of(Op.SYNC_END, "Ingress")) == 1
        finally:
            watcher.stop.set()
            await asyncio.wait_for(task, 10)


async def _true(value: bool) -> bool:
    return value


async def test_deleted_while_down_is_gone_after_restart(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(ingress("a"))
    kube.create(ingress("b"))
    first = await start_watcher()
    await wait_synced(events, "Ingress")
    await first.stop()

    kube.delete("networking.k8s.io/v1", "Ingress", "default", "b")
    await start_watcher()
    await wait_synced(events, "Ingress", count=2)
    assert last_sync_keys(events, "Ingress") == ["default/a"]
    assert folded_keys(events, "Ingress") == {"default/a"}


async def test_every_ingress_and_class_is_published(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    # Which class is served is the builder's decision (docs/design.md §4): the watcher publishes facts.
    kube.create(ingress("ours"))
    kube.create(ingress("nginx", class_name="nginx"))
    kube.create(ingress("unclassed", class_name=None))
    kube.create(ingress_class("nginx", controller="k8s.io/ingress-nginx"))
    await start_watcher(ingress_class="higress")
    await wait_synced(events, "Ingress", "IngressClass")
    assert last_sync_keys(events, "Ingress") == ["default/nginx", "default/ours", "default/unclassed"]
    assert last_sync_keys(events, "IngressClass") == ["nginx"]

    # A class change is one IngressClass event; the Ingresses are not published again.
    upserts = len(events.of(Op.UPSERT, "Ingress"))
    kube.create(ingress_class("higress", default=True))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "IngressClass", "higress"), "higress class")
    kube.update(ingress("ours", class_name="nginx"))
    await events.wait_for(lambda log: len(log.of(Op.UPSERT, "Ingress", "default/ours")) == 2, "ours moved")
    assert len(events.of(Op.UPSERT, "Ingress")) == upserts + 1
    assert events.of(Op.DELETE, "Ingress") == []


async def test_missing_crd_is_waited_for(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(service("web"))
    run = await start_watcher()
    await wait_synced(events, *CORE_KINDS)
    assert not events.of(Op.SYNC_BEGIN, "WasmPlugin") and not events.of(Op.SYNC_BEGIN, "HTTPRoute")

    # Installed later: picked up without a restart. ReferenceGrant is served only as v1beta1 here.
    install(kube, WASMPLUGINS, GATEWAYCLASSES, HTTPROUTES, REFERENCEGRANTS_V1BETA1)
    kube.create(custom("extensions.higress.io/v1alpha1", "WasmPlugin", "auth"))
    kube.create(custom("gateway.networking.k8s.io/v1", "HTTPRoute", "r", "default"))
    kube.create(custom("gateway.networking.k8s.io/v1beta1", "ReferenceGrant", "rg", "default"))
    await wait_synced(events, "WasmPlugin", "GatewayClass", "HTTPRoute", "ReferenceGrant")
    assert upserted_keys(events, "WasmPlugin") == {f"{SYSTEM}/auth"}
    assert upserted_keys(events, "HTTPRoute") == {"default/r"}
    grant = events.of(Op.UPSERT, "ReferenceGrant")[0]
    assert grant.key == "default/rg" and grant.body["apiVersion"] == "gateway.networking.k8s.io/v1beta1"
    assert last_sync_keys(events, "GatewayClass") == []
    assert run.loop("ReferenceGrant").version == "v1beta1"
    # Still-missing kinds did not hold anything up, and the built-in kinds carried on meanwhile.
    assert not events.of(Op.SYNC_BEGIN, "Http2Rpc")
    kube.create(service("api"))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "default/api"), "api")


async def test_namespace_scoping(kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher) -> None:
    install_higress_crds(kube)
    kube.create(service("a", "team-a"))
    kube.create(service("b", "team-b"))
    kube.create(ingress("a", "team-a"))
    kube.create(ingress("b", "team-b"))
    kube.create(secret("tls", "team-a", type_="kubernetes.io/tls", tls_crt=B64, tls_key=B64))
    kube.create(secret("tls", "team-b", type_="kubernetes.io/tls", tls_crt=B64, tls_key=B64))
    kube.create(secret("opaque", "team-a"))
    kube.create(secret("registry", SYSTEM))
    kube.create(config_map("higress-config"))
    kube.create(custom("extensions.higress.io/v1alpha1", "WasmPlugin", "auth"))
    await start_watcher(watch_namespace="team-a")
    await wait_synced(events, *CORE_KINDS, "WasmPlugin")
    assert upserted_keys(events, "Service") == {"team-a/a"}
    assert upserted_keys(events, "Ingress") == {"team-a/a"}
    # One resync for the kind, over both Secret feeds: the watched namespace's TLS secret and every
    # Secret of the system namespace.
    assert last_sync_keys(events, "Secret") == ["higress-system/registry", "team-a/tls"]
    assert len(events.of(Op.SYNC_END, "Secret")) == 1
    assert upserted_keys(events, "ConfigMap") == {f"{SYSTEM}/higress-config"}
    assert upserted_keys(events, "WasmPlugin") == {f"{SYSTEM}/auth"}

    kube.create(service("c", "team-b"))
    kube.create(service("c", "team-a"))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "team-a/c"), "team-a/c")
    assert upserted_keys(events, "Service") == {"team-a/a", "team-a/c"}


async def test_a_list_publishes_each_page_as_it_arrives_and_the_complete_list_decides(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    for name in ("a", "b", "c", "d", "e"):
        kube.create(service(name))
    # Every page after the first fails until the failures are cleared: the list cannot complete.
    kube.fail_next(10**6, 500, match="continue=")
    await start_watcher(page_size=2)
    await events.wait_for(
        lambda log: upserted_keys(log, "Service") == {"default/a", "default/b"}, "the first page's objects"
    )
    assert events.of(Op.SYNC_BEGIN, "Service") == events.of(Op.SYNC_END, "Service") == []

    # An object of that page deleted before the list completes: the complete list does not name it.
    kube.delete("v1", "Service", "default", "a")
    kube.clear_failures()
    await wait_synced(events, "Service")
    assert last_sync_keys(events, "Service") == ["default/b", "default/c", "default/d", "default/e"]
    upserts = [e.key for e in events.of(Op.UPSERT, "Service")]
    assert sorted(upserts) == ["default/a", "default/b", "default/c", "default/d", "default/e"]  # once each
    assert folded_keys(events, "Service") == {"default/b", "default/c", "default/d", "default/e"}


async def test_a_cold_start_publishes_the_backends_before_the_routes_to_them(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    # Many pages of Services and slices, one of Ingresses: listed side by side, the Ingress would be first.
    for i in range(300):
        kube.create(service(f"s{i:03d}"))
        kube.create(endpoint_slice(f"s{i:03d}-x", f"s{i:03d}"))
    kube.create(ingress("site"))
    await start_watcher(page_size=20)
    await wait_synced(events, "Service", "EndpointSlice", "Ingress")
    kinds = [e.kind for e in events.events if e.op is Op.UPSERT]
    first_route = kinds.index("Ingress")
    assert kinds[:first_route].count("Service") == kinds[:first_route].count("EndpointSlice") == 300


async def test_api_errors_back_off_and_recover(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(service("web"))
    kube.fail_next(3, 503, match="/services")  # the first lists fail
    run = await start_watcher()
    await wait_synced(events, "Service")
    assert upserted_keys(events, "Service") == {"default/web"}

    # An outage of every request mid-watch: nothing is deleted, nothing relisted, the watch resumes.
    kube.failing = 500
    kube.drop_watches()
    await eventually(
        lambda: _true(sum(r.watch for r in kube.requests) > 20), what="retries during the outage"
    )
    kube.failing = None
    kube.create(service("api"))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Service", "default/api"), "api after the outage")
    assert events.of(Op.DELETE) == []
    assert len(events.of(Op.SYNC_END, "Service")) == 1
    assert run.loop("Service").lists == 1


async def test_status_writes_by_the_lease_holder_only(
    kube: FakeKubeApi, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(ingress("ours"))
    kube.create(ingress("theirs", class_name="nginx"))
    # Another instance holds the lease (renewing it, so that it cannot expire): this one stands by.
    revision = await bus.leases.create(lease_name("default"), b"someone-else")

    async def hold() -> None:
        nonlocal revision
        while True:
            await asyncio.sleep(0.5)
            revision = await bus.leases.update(lease_name("default"), b"someone-else", last=revision)

    holder = asyncio.create_task(hold())
    try:
        await start_watcher(gateway_addresses=["10.0.0.1", "gw.example.com"], instance_id="standby")
        await wait_synced(events, "Ingress")
        kube.create(ingress("marker"))
        await events.wait_for(lambda log: log.of(Op.UPSERT, "Ingress", "default/marker"), "marker")
        assert kube.status_writes == []  # the standby publishes events but writes no status
    finally:
        holder.cancel()
    await bus.leases.delete(lease_name("default"))  # the holder goes away: this one takes over
    wanted = [{"ip": "10.0.0.1"}, {"hostname": "gw.example.com"}]

    def load_balancer(name: str) -> Any:
        obj = kube.get("networking.k8s.io/v1", "Ingress", "default", name)
        return (obj or {}).get("status", {}).get("loadBalancer", {}).get("ingress")

    await eventually(lambda: _true(load_balancer("ours") == load_balancer("marker") == wanted), what="status")
    assert load_balancer("theirs") is None  # not ours to write
    assert {(w.name, w.method) for w in kube.status_writes} == {("ours", "PATCH"), ("marker", "PATCH")}

    # Someone else overwrites it: re-asserted. Neither write comes back as an event.
    kube.set_status("networking.k8s.io/v1", "Ingress", "default", "ours", {"loadBalancer": {"ingress": []}})
    await eventually(lambda: _true(load_balancer("ours") == wanted), what="status re-asserted")
    kube.create(ingress("marker2"))
    await events.wait_for(lambda log: log.of(Op.UPSERT, "Ingress", "default/marker2"), "marker2")
    assert len(events.of(Op.UPSERT, "Ingress", "default/ours")) == 1
    assert len(events.of(Op.UPSERT, "Ingress", "default/marker")) == 1


async def test_two_replicas_one_publisher(
    kube: FakeKubeApi, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    """One publisher per source (docs/design.md §4): the holder of `watch.k8s.default` publishes, the other
    replica stands by, and takes over with a full resync under a newer term when the holder stops."""
    kube.create(service("web"))
    kube.create(ingress("site"))
    kube.create(secret("tls", type_="kubernetes.io/tls", tls_crt=B64, tls_key=B64))
    one = await start_watcher(instance_id="one")
    await wait_synced(events, "Service", "Ingress", "Secret")
    two = await start_watcher(instance_id="two")
    kube.create(service("api"))
    kube.update(service("web", port=81))
    kube.delete("networking.k8s.io/v1", "Ingress", "default", "site")
    await events.wait_for(lambda log: log.of(Op.DELETE, "Ingress", "default/site"), "site deleted")
    assert (await bus.leases.get("watch.k8s.default")).value == b"one"
    assert two.watcher.term == 0 and two.watcher.loops == []  # standing by: not even listing
    assert {e.term for e in events.events} == {one.watcher.term}
    assert one.watcher.term > 0

    await one.stop()  # gives the lease back: the standby takes over at once
    await wait_synced(events, "Service", "Ingress", "Secret", count=2)
    assert two.watcher.term > one.watcher.term
    newer = [e for e in events.events if e.term == two.watcher.term]
    # A new holder begins with a full resync that publishes every object again (another replica's
    # publishes are not its own memory), even what the fold holds already.
    assert {(e.kind, e.key) for e in newer if e.op is Op.UPSERT and e.kind == "Service"} == {
        ("Service", "default/web"),
        ("Service", "default/api"),
    }
    assert folded_keys(events, "Service") == {"default/web", "default/api"}
    assert folded_keys(events, "Ingress") == set()
    assert folded_keys(events, "Secret") == {"default/tls"}
