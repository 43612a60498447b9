"""The fake apiserver driven by the real kubernetes_asyncio client (list, watch, writes, faults)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio import client, config, watch
from kubernetes_asyncio.client.exceptions import ApiException

from tests.fakes.kube_api import (
    GATEWAYS,
    REFERENCEGRANTS,
    REFERENCEGRANTS_V1BETA1,
    FakeKubeApi,
)
from xdsbus_dev.harness.processes import eventually

GW = "gateway.networking.k8s.io"


def service(name: str, namespace: str = "default", labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}},
        "spec": {"ports": [{"name": "http", "port": 80}]},
    }


def typed_service(name: str) -> client.V1Service:
    return client.V1Service(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1ServiceSpec(ports=[client.V1ServicePort(name="http", port=80)]),
    )


def reason(err: ApiException) -> str:
    """The `reason` of the Status body the apiserver answered with."""
    return str(json.loads(err.body or b"{}")["reason"])


def ingress(name: str, host: str = "a.example.com") -> dict[str, Any]:
    backend = {"service": {"name": "web", "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "ingressClassName": "higress",
            "rules": [
                {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]}}
            ],
        },
    }


def gateway(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GW}/v1",
        "kind": "Gateway",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "gatewayClassName": "xdsbus",
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
        },
    }


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubeApi]:
    async with FakeKubeApi(bookmark_interval=0.1) as fake:
        yield fake


async def api_client(kube: FakeKubeApi, kubeconfig: Path) -> client.ApiClient:
    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(kube.write_kubeconfig(kubeconfig)), client_configuration=cfg
    )
    return client.ApiClient(cfg)


@pytest.fixture
async def api(kube: FakeKubeApi, tmp_path: Path) -> AsyncIterator[client.ApiClient]:
    async with await api_client(kube, tmp_path / "kubeconfig") as c:
        yield c


class Watching:
    """A kubernetes_asyncio Watch consumed by a background task, for assertions while it runs."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.error: BaseException | None = None
        self.ended = False

    async def run(self, w: watch.Watch, func: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        try:
            async for event in w.stream(func, **kwargs):
                self.events.append(event)
            self.ended = True
        except Exception as exc:
            self.error = exc

    def of(self, *types: str) -> list[tuple[str, str | None, str]]:
        return [
            (
                e["type"],
                e["raw_object"]["metadata"].get("name"),
                e["raw_object"]["metadata"]["resourceVersion"],
            )
            for e in self.events
            if not types or e["type"] in types
        ]


@contextlib.asynccontextmanager
async def watching(func: Callable[..., Any], **kwargs: Any) -> AsyncIterator[Watching]:
    w = watch.Watch()
    state = Watching()
    task = asyncio.create_task(state.run(w, func, kwargs))
    try:
        yield state
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await w.close()


async def until(predicate: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    async def probe() -> Any:
        return predicate()

    return await eventually(probe, timeout=timeout, interval=0.01, what=what)


async def test_list_then_watch_sees_changes_in_order(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("existing"))
    listed = await core.list_service_for_all_namespaces()
    assert listed.metadata.resource_version == kube.resource_version
    assert [s.metadata.name for s in listed.items] == ["existing"]

    async with watching(
        core.list_service_for_all_namespaces, resource_version=listed.metadata.resource_version
    ) as seen:
        await until(lambda: kube.open_watches("services") == 1, "watch open")
        await core.create_namespaced_service("default", typed_service("api"))  # over HTTP
        kube.update({**service("api"), "spec": {"ports": [{"name": "http", "port": 8080}]}})  # by the driver
        await core.delete_namespaced_service("api", "default")
        await until(lambda: len(seen.events) == 3, "three events")

    assert [(t, n) for t, n, _ in seen.of()] == [("ADDED", "api"), ("MODIFIED", "api"), ("DELETED", "api")]
    rvs = [int(rv) for _, _, rv in seen.of()]
    assert rvs == sorted(rvs) and rvs[0] > int(listed.metadata.resource_version)
    assert isinstance(seen.events[1]["object"], client.V1Service)
    assert seen.events[1]["object"].spec.ports[0].port == 8080
    assert seen.events[2]["raw_object"]["spec"]["ports"][0]["port"] == 8080  # DELETED carries the last state


async def test_watch_without_rv_starts_with_synthetic_added(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for name in ("b", "a"):
        kube.create(service(name, labels={"app": "web"}))
    kube.create(service("other", labels={"app": "db"}))
    async with watching(core.list_service_for_all_namespaces, label_selector="app=web") as seen:
        await until(lambda: len(seen.events) == 2, "initial state")
        kube.create(service("c", labels={"app": "web"}))
        await until(lambda: len(seen.events) == 3, "live event")
    assert [(t, n) for t, n, _ in seen.of()] == [("ADDED", "a"), ("ADDED", "b"), ("ADDED", "c")]


async def test_bookmarks_on_demand_and_periodic(kube: FakeKubeApi, api: client.ApiClient) -> None:
    net = client.NetworkingV1Api(api)
    kube.create(ingress("one"))
    kube.bookmark_interval = 3600.0  # read when a watch starts: this one gets no periodic bookmarks
    list_ingresses = net.list_ingress_for_all_namespaces
    async with watching(
        list_ingresses, resource_version=kube.resource_version, allow_watch_bookmarks=True
    ) as seen:
        await until(lambda: kube.open_watches("ingresses") == 1, "watch open")
        kube.create(service("unrelated"))  # moves the global RV, which bookmarks report
        assert kube.send_bookmarks() == 1
        await until(lambda: seen.events, "an on-demand bookmark")
    assert seen.of() == [("BOOKMARK", None, kube.resource_version)]
    assert isinstance(seen.events[0]["object"], dict)  # the client leaves bookmarks undeserialised

    kube.bookmark_interval = 0.05
    async with watching(
        list_ingresses, resource_version=kube.resource_version, allow_watch_bookmarks=True
    ) as seen:
        await until(lambda: len(seen.of("BOOKMARK")) >= 2, "periodic bookmarks")
    assert {rv for _, _, rv in seen.of()} == {kube.resource_version}


async def test_no_bookmarks_unless_allowed(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    async with watching(core.list_namespace, resource_version=kube.resource_version) as seen:
        await until(lambda: kube.open_watches("namespaces") == 1, "watch open")
        kube.send_bookmarks()
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}})
        await until(lambda: seen.events, "namespace event")
    assert seen.of() == [("ADDED", "team-a", kube.resource_version)]
    assert seen.events[0]["object"].metadata.labels == {"kubernetes.io/metadata.name": "team-a"}


async def test_watch_from_compacted_rv_raises_410(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    old = kube.resource_version
    kube.create(service("x"))
    kube.compact()

    def watch_requests() -> list[str]:
        return [r.query.get("resourceVersion", "") for r in kube.requests if r.watch]

    # With timeout_seconds the client raises at once.
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        async for _ in w.stream(
            core.list_service_for_all_namespaces, resource_version=old, timeout_seconds=5
        ):
            pass
    await w.close()
    assert err.value.status == 410
    assert str(err.value.reason).startswith("Expired: too old resource version")
    assert watch_requests() == [old]

    # Without it the client retries once with the same RV, then raises: the watcher must relist.
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        async for _ in w.stream(core.list_service_for_all_namespaces, resource_version=old):
            pass
    await w.close()
    assert err.value.status == 410
    assert watch_requests() == [old, old, old]

    # A watch from the current RV (what a relist returns) is fine.
    listed = await core.list_service_for_all_namespaces()
    async with watching(
        core.list_service_for_all_namespaces, resource_version=listed.metadata.resource_version
    ) as seen:
        await until(lambda: kube.open_watches("services") == 1, "watch open")
        kube.delete("v1", "Service", "default", "x")
        await until(lambda: seen.events, "event after relist")
    assert seen.error is None


async def test_history_is_bounded(tmp_path: Path) -> None:
    async with FakeKubeApi(history=3) as kube:
        start = kube.resource_version
        for i in range(5):
            kube.create(service(f"s{i}"))
        async with await api_client(kube, tmp_path / "kubeconfig") as c:
            core = client.CoreV1Api(c)
            w = watch.Watch()
            with pytest.raises(ApiException) as err:
                async for _ in w.stream(
                    core.list_service_for_all_namespaces, resource_version=start, timeout_seconds=5
                ):
                    pass
            await w.close()
            assert err.value.status == 410
            # The last three events are still there.
            recent = str(int(kube.resource_version) - 3)
            seen = []
            w = watch.Watch()
            async for ev in w.stream(
                core.list_service_for_all_namespaces, resource_version=recent, timeout_seconds=5
            ):
                seen.append(ev["object"].metadata.name)
                if len(seen) == 3:
                    break
            await w.close()
            assert seen == ["s2", "s3", "s4"]


async def test_timeout_seconds_ends_the_stream(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    started = time.monotonic()
    events = []
    w = watch.Watch()
    async for ev in w.stream(
        core.list_config_map_for_all_namespaces, resource_version=kube.resource_version, timeout_seconds=1
    ):
        events.append(ev)
    await w.close()
    elapsed = time.monotonic() - started
    assert events == []
    assert 0.9 <= elapsed < 3


async def test_crd_absent_404_then_installed(kube: FakeKubeApi, api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as err:
        await custom.list_cluster_custom_object(GW, "v1", "gateways")
    assert err.value.status == 404
    with pytest.raises(ApiException) as err:
        await custom.get_api_resources(GW, "v1")
    assert err.value.status == 404
    w = watch.Watch()
    with pytest.raises(ApiException) as err:
        async for _ in w.stream(custom.list_cluster_custom_object, GW, "v1", "gateways", timeout_seconds=1):
            pass
    await w.close()
    assert err.value.status == 404
    with pytest.raises(Exception, match="not installed"):
        kube.create(gateway("early"))

    kube.install_crd(GATEWAYS)
    resources = await custom.get_api_resources(GW, "v1")
    assert {r.name for r in resources.resources} == {"gateways", "gateways/status"}
    groups = await client.ApisApi(api).get_api_versions()
    assert GW in [g.name for g in groups.groups]
    crds = await client.ApiextensionsV1Api(api).list_custom_resource_definition()
    assert [c.metadata.name for c in crds.items] == [f"gateways.{GW}"]

    created = await custom.create_namespaced_custom_object(GW, "v1", "default", "gateways", gateway("gw"))
    assert created["metadata"]["generation"] == 1
    listed = await custom.list_cluster_custom_object(GW, "v1", "gateways")
    assert listed["kind"] == "GatewayList"
    assert [(i["kind"], i["metadata"]["name"]) for i in listed["items"]] == [("Gateway", "gw")]
    assert kube.get(f"{GW}/v1", "Gateway", "default", "gw") is not None

    kube.uninstall_crd(GATEWAYS)
    with pytest.raises(ApiException) as err:
        await custom.list_cluster_custom_object(GW, "v1", "gateways")
    assert err.value.status == 404
    assert (await client.ApiextensionsV1Api(api).list_custom_resource_definition()).items == []


async def test_status_subresource_writes(kube: FakeKubeApi, api: client.ApiClient) -> None:
    net = client.NetworkingV1Api(api)
    created = kube.create(ingress("web"))
    status = {"loadBalancer": {"ingress": [{"ip": "10.0.0.7"}]}}
    # The body also tries to change the spec: /status must ignore that.
    patched = await net.patch_namespaced_ingress_status(
        "web", "default", {"status": status, "spec": {"rules": []}}
    )
    assert patched.status.load_balancer.ingress[0].ip == "10.0.0.7"
    assert patched.spec.rules[0].host == "a.example.com"
    assert patched.metadata.generation == created["metadata"]["generation"] == 1
    assert int(patched.metadata.resource_version) > int(created["metadata"]["resourceVersion"])
    [write] = kube.status_writes
    assert (write.kind, write.namespace, write.name, write.method) == ("Ingress", "default", "web", "PATCH")
    assert write.status == status and write.changed

    # Writing the same status again is a no-op: no new RV.
    again = await net.patch_namespaced_ingress_status("web", "default", {"status": status})
    assert again.metadata.resource_version == patched.metadata.resource_version
    assert len(kube.status_writes) == 2 and not kube.status_writes[1].changed

    # The main resource cannot change status; a spec change bumps generation.
    body = {"spec": {"rules": [{"host": "b.example.com"}]}, "status": {"loadBalancer": {}}}
    updated = await net.patch_namespaced_ingress("web", "default", body)
    assert updated.metadata.generation == 2
    assert updated.status.load_balancer.ingress[0].ip == "10.0.0.7"
    assert len(kube.status_writes) == 2

    # ConfigMaps have no status subresource.
    kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}})
    with pytest.raises(ApiException) as err:
        await api.call_api(
            "/api/v1/namespaces/default/configmaps/cm/status", "GET", response_types_map={200: "object"}
        )
    assert err.value.status == 404


async def test_label_and_field_selectors(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("web-1", labels={"app": "web", "tier": "front"}))
    kube.create(service("web-2", "prod", labels={"app": "web"}))
    kube.create(service("db", labels={"app": "db"}))
    kube.create(service("bare"))

    async def names(**kw: Any) -> list[str]:
        return [s.metadata.name for s in (await core.list_service_for_all_namespaces(**kw)).items]

    assert await names(label_selector="app=web") == ["web-1", "web-2"]
    assert await names(label_selector="app!=web") == ["bare", "db"]
    assert await names(label_selector="tier") == ["web-1"]
    assert await names(label_selector="!tier") == ["bare", "db", "web-2"]
    assert await names(label_selector="app=web,tier=front") == ["web-1"]
    assert await names(label_selector="app in (db, web),!tier") == ["db", "web-2"]
    assert await names(field_selector="metadata.name=db") == ["db"]
    assert await names(field_selector="metadata.namespace!=default") == ["web-2"]
    namespaced = await core.list_namespaced_service("prod")
    assert [s.metadata.name for s in namespaced.items] == ["web-2"]
    with pytest.raises(ApiException) as err:
        await core.list_service_for_all_namespaces(field_selector="spec.type=ClusterIP")
    assert err.value.status == 400

    # Selectors on a watch: entering the selector is ADDED, leaving it is DELETED.
    async with watching(
        core.list_service_for_all_namespaces, label_selector="app=web", resource_version=kube.resource_version
    ) as seen:
        await until(lambda: kube.open_watches("services") == 1, "watch open")
        kube.update(service("db", labels={"app": "web"}))
        kube.update(service("web-1", labels={"app": "gone"}))
        kube.update(service("bare", labels={"other": "x"}))
        kube.update(service("web-2", "prod", labels={"app": "web", "v": "2"}))
        await until(lambda: len(seen.events) == 3, "three transitions")
    assert [(t, n) for t, n, _ in seen.of()] == [("ADDED", "db"), ("DELETED", "web-1"), ("MODIFIED", "web-2")]
    assert seen.events[1]["raw_object"]["metadata"]["labels"] == {"app": "web", "tier": "front"}


async def test_pagination_and_expired_continue(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for i in range(5):
        kube.create(service(f"s{i}"))
    first = await core.list_service_for_all_namespaces(limit=2)
    assert [s.metadata.name for s in first.items] == ["s0", "s1"]
    assert first.metadata.remaining_item_count == 3
    kube.create(service("s5"))  # pages are a consistent snapshot
    second = await core.list_service_for_all_namespaces(limit=2, _continue=first.metadata._continue)
    third = await core.list_service_for_all_namespaces(limit=2, _continue=second.metadata._continue)
    assert [s.metadata.name for s in second.items + third.items] == ["s2", "s3", "s4"]
    assert third.metadata._continue is None
    assert second.metadata.resource_version == first.metadata.resource_version

    page = await core.list_service_for_all_namespaces(limit=2)
    kube.compact()
    with pytest.raises(ApiException) as err:
        await core.list_service_for_all_namespaces(limit=2, _continue=page.metadata._continue)
    assert err.value.status == 410


async def test_write_conflicts(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("api"))
    with pytest.raises(ApiException) as err:
        await core.create_namespaced_service("default", typed_service("api"))
    assert err.value.status == 409 and reason(err.value) == "AlreadyExists"

    current = await core.read_namespaced_service("api", "default")
    kube.update({**service("api"), "spec": {"ports": [{"port": 81}]}})
    current.spec.ports[0].port = 82
    with pytest.raises(ApiException) as err:
        await core.replace_namespaced_service("api", "default", current)
    assert err.value.status == 409 and reason(err.value) == "Conflict"

    # Custom resources demand a resourceVersion on PUT; merge patches need no RV.
    kube.install_crd(GATEWAYS)
    custom = client.CustomObjectsApi(api)
    kube.create(gateway("gw"))
    with pytest.raises(ApiException) as err:
        await custom.replace_namespaced_custom_object(GW, "v1", "default", "gateways", "gw", gateway("gw"))
    assert err.value.status == 422
    # The generated client sends a dict body as a JSON patch, which the apiserver rejects...
    with pytest.raises(ApiException) as err:
        await custom.patch_namespaced_custom_object_status(
            GW, "v1", "default", "gateways", "gw", {"status": {}}
        )
    assert err.value.status == 400
    # ...so status writers pass the merge-patch content type explicitly.
    conditions = [{"type": "Programmed", "status": "True"}]
    patched = await custom.patch_namespaced_custom_object_status(  # type: ignore[call-arg]  # not in stubs
        GW,
        "v1",
        "default",
        "gateways",
        "gw",
        {"status": {"conditions": conditions}},
        _content_type="application/merge-patch+json",
    )
    assert patched["status"]["conditions"] == conditions
    assert kube.status_writes[-1].kind == "Gateway"


async def test_versions_share_objects(kube: FakeKubeApi, api: client.ApiClient) -> None:
    kube.install_crd(REFERENCEGRANTS)
    kube.install_crd(*REFERENCEGRANTS_V1BETA1)
    kube.create(
        {
            "apiVersion": f"{GW}/v1beta1",
            "kind": "ReferenceGrant",
            "metadata": {"name": "rg", "namespace": "backends"},
            "spec": {"from": [], "to": []},
        }
    )
    custom = client.CustomObjectsApi(api)
    for version in ("v1", "v1beta1"):
        listed = await custom.list_cluster_custom_object(GW, version, "referencegrants")
        assert [i["apiVersion"] for i in listed["items"]] == [f"{GW}/{version}"]
    preferred = (await client.ApisApi(api).get_api_versions()).groups
    assert next(g for g in preferred if g.name == GW).preferred_version.version == "v1"


async def test_bearer_token(tmp_path: Path) -> None:
    async with FakeKubeApi(token="s3cret") as kube:
        async with client.ApiClient(client.Configuration(host=kube.url)) as anonymous:
            with pytest.raises(ApiException) as err:
                await client.CoreV1Api(anonymous).list_namespace()
            assert err.value.status == 401
        async with await api_client(kube, tmp_path / "kubeconfig") as authed:
            names = [n.metadata.name for n in (await client.CoreV1Api(authed).list_namespace()).items]
            assert names == ["default", "kube-node-lease", "kube-public", "kube-system"]


async def test_injected_failures_and_restart(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.fail_next(2, status=503)
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            await core.list_secret_for_all_namespaces()
        assert err.value.status == 503
    await core.list_secret_for_all_namespaces()

    kube.failing = 500
    with pytest.raises(ApiException):
        await core.list_secret_for_all_namespaces()
    kube.failing = None

    kube.create(service("kept"))
    await kube.stop()
    await kube.start()  # same port, same state: an apiserver restart
    assert [s.metadata.name for s in (await core.list_service_for_all_namespaces()).items] == ["kept"]


async def test_drop_watches(kube: FakeKubeApi, api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    kube.create(service("a"))
    rv = kube.resource_version

    # An abrupt cut surfaces as an aiohttp error from the client (a ClientPayloadError mid-body).
    async with watching(core.list_service_for_all_namespaces, resource_version=rv) as seen:
        await until(lambda: kube.open_watches() == 1, "watch open")
        assert kube.drop_watches() == 1
        await until(lambda: seen.error is not None, "the client notices")
    assert isinstance(seen.error, aiohttp.ClientError)
    await until(lambda: kube.open_watches() == 0, "server side cleaned up")

    # A clean end of stream makes a watch without timeout_seconds reconnect from its last RV.
    async with watching(core.list_service_for_all_namespaces, resource_version=rv) as seen:
        await until(lambda: kube.open_watches() == 1, "watch open")
        kube.update({**service("a"), "spec": {"ports": [{"port": 90}]}})
        await until(lambda: seen.events, "event")
        last_rv = seen.of()[-1][2]
        kube.drop_watches(graceful=True)
        await until(
            lambda: [r for r in kube.requests if r.query.get("resourceVersion") == last_rv], "reconnect"
        )
        kube.delete("v1", "Service", "default", "a")
        await until(lambda: len(seen.events) == 2, "event after reconnect")
    assert [t for t, _, _ in seen.of()] == ["MODIFIED", "DELETED"]
