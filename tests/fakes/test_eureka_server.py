"""The fake Eureka server driven by the real py-eureka-client 0.13.3 (registration, heartbeat, status
override, full fetch, delta with its hashcode check) and by plain HTTP (JSON/XML documents, faults)."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.error import HTTPError
from xml.etree import ElementTree

import aiohttp
import pytest
from py_eureka_client import eureka_basic
from py_eureka_client.eureka_client import EurekaClient

from tests.fakes.eureka_server import FakeEureka, RequestRecord


@pytest.fixture
async def eureka() -> AsyncIterator[FakeEureka]:
    async with FakeEureka() as server:
        yield server


def client(server: FakeEureka, **kwargs: Any) -> EurekaClient:
    """A py-eureka-client whose heartbeat/delta thread never fires during a test (it runs its own event
    loop on a thread and never stops once started): the tests call its steps on this loop instead."""
    kwargs.setdefault("renewal_interval_in_secs", 3600)
    return EurekaClient(eureka_server=server.url, **kwargs)


async def fetch_delta(c: EurekaClient) -> None:
    """One delta step of the client's heartbeat thread: fetch, merge, hashcode check, full pull on
    mismatch."""
    await c._EurekaClient__fetch_delta()  # type: ignore[attr-defined]


async def get(server: FakeEureka, path: str, accept: str | None = None) -> tuple[int, bytes]:
    headers = {"Accept": accept} if accept else {}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{server.port}{path}", headers=headers) as resp,
    ):
        return resp.status, await resp.read()


def since(server: FakeEureka, mark: int) -> list[RequestRecord]:
    return list(server.requests)[mark:]


async def test_client_registers_heartbeats_and_cancels(eureka: FakeEureka) -> None:
    c = client(
        eureka,
        app_name="order-service",
        instance_host="10.0.0.1",
        instance_ip="10.0.0.1",
        instance_port=8080,
        metadata={"zone": "z1", "protocol": "grpc"},
    )
    await c.start()
    try:
        (instance,) = eureka.instances("ORDER-SERVICE").values()
        assert instance.instance_id == "10.0.0.1:order-service:8080"
        assert (instance.ip, instance.port, instance.status) == ("10.0.0.1", 8080, "UP")
        assert instance.metadata == {"management.port": "8080", "zone": "z1", "protocol": "grpc"}
        # The client's own full pull (XML, no Accept header, trailing slash) sees itself.
        app = c.applications.get_application("ORDER-SERVICE")
        assert [(i.ipAddr, i.port.port, i.port.enabled, i.status) for i in app.instances] == [
            ("10.0.0.1", 8080, True, "UP")
        ]
        assert RequestRecord("POST", "/eureka/apps/ORDER-SERVICE", None) in eureka.requests
        assert RequestRecord("GET", "/eureka/apps/", None) in eureka.requests

        await eureka_basic.send_heartbeat(eureka.url, "ORDER-SERVICE", instance.instance_id, 1)
        with pytest.raises(HTTPError) as err:
            await eureka_basic.send_heartbeat(eureka.url, "ORDER-SERVICE", "nobody", 1)
        assert err.value.code == 404

        # Admin override and its removal, through the client's status calls.
        await c.status_update("OUT_OF_SERVICE")
        assert (instance.status, instance.overridden_status) == ("OUT_OF_SERVICE", "OUT_OF_SERVICE")
        await c.delete_status_override()
        assert (instance.status, instance.overridden_status) == ("UNKNOWN", "UNKNOWN")
    finally:
        # Deregistration: re-register DOWN, then DELETE.
        await c.stop()
    assert eureka.instances("ORDER-SERVICE") == {}
    assert (
        RequestRecord("DELETE", f"/eureka/apps/ORDER-SERVICE/{instance.instance_id}", None) in eureka.requests
    )


async def test_client_follows_deltas_and_reconciles_on_hashcode_mismatch(eureka: FakeEureka) -> None:
    eureka.register("orders", "o1", "10.0.0.1", 8080)
    c = client(eureka, should_register=False)
    await c.start()
    try:

        def seen() -> dict[str, str]:
            app = c.applications.get_application("ORDERS")
            return {i.instanceId: i.status for i in app.instances}

        assert seen() == {"o1": "UP"}

        eureka.register("orders", "o2", "10.0.0.2", 8080)
        eureka.set_status("orders", "o1", "DOWN")
        mark = len(eureka.requests)
        await fetch_delta(c)
        assert seen() == {"o1": "DOWN", "o2": "UP"}
        assert [r.path for r in since(eureka, mark)] == ["/eureka/apps/delta"]  # the hashcode matched
        assert eureka.hashcode == "DOWN_1_UP_1_"

        eureka.cancel("orders", "o2")
        await fetch_delta(c)
        assert seen() == {"o1": "DOWN"}

        # A change that fell out of the window: the delta misses it, the hashcode does not.
        eureka.register("orders", "o3", "10.0.0.3", 8080)
        eureka.forget_recent_changes()
        mark = len(eureka.requests)
        await fetch_delta(c)
        assert [r.path for r in since(eureka, mark)] == ["/eureka/apps/delta", "/eureka/apps/"]
        assert seen() == {"o1": "DOWN", "o3": "UP"}

        # A corrupt hashcode forces the full pull too.
        eureka.register("orders", "o4", "10.0.0.4", 8080)
        eureka.corrupt_delta_hashcode()
        mark = len(eureka.requests)
        await fetch_delta(c)
        assert [r.path for r in since(eureka, mark)] == ["/eureka/apps/delta", "/eureka/apps/"]
        assert seen() == {"o1": "DOWN", "o3": "UP", "o4": "UP"}
    finally:
        await c.stop()


async def test_v2_prefix() -> None:
    async with FakeEureka(prefix="/eureka/v2") as server:
        assert server.url.endswith("/eureka/v2/")
        c = client(server, app_name="billing", instance_host="h", instance_ip="10.0.0.9", instance_port=81)
        await c.start()
        try:
            assert [i.port.port for i in c.applications.get_application("BILLING").instances] == [81]
            assert (await get(server, "/eureka/apps"))[0] == 404
        finally:
            await c.stop()


async def test_json_document_follows_the_jackson_codec(eureka: FakeEureka) -> None:
    eureka.register("order-service", "i1", "10.0.0.1", 8080)
    eureka.register(
        "order-service", "i2", "10.0.0.2", 8080, metadata={"zone": "z1"}, secure_port_enabled=True
    )
    status, body = await get(eureka, "/eureka/apps", "application/json")
    assert status == 200
    apps = json.loads(body)["applications"]
    assert (apps["versions__delta"], apps["apps__hashcode"]) == ("1", "UP_2_")
    (app,) = apps["application"]
    assert app["name"] == "ORDER-SERVICE"
    first, second = app["instance"]
    assert first["port"] == {"$": 8080, "@enabled": "true"}
    assert first["securePort"] == {"$": 443, "@enabled": "false"}
    assert second["securePort"] == {"$": 443, "@enabled": "true"}
    assert first["metadata"] == {"@class": "java.util.Collections$EmptyMap"}
    assert second["metadata"] == {"zone": "z1"}
    assert first["overriddenStatus"] == "UNKNOWN"
    assert first["dataCenterInfo"]["@class"] == "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
    assert isinstance(first["lastDirtyTimestamp"], str) and isinstance(
        first["leaseInfo"]["durationInSecs"], int
    )

    # One application, one instance: still arrays.
    status, body = await get(eureka, "/eureka/apps/order-service/i1", "application/json")
    assert json.loads(body)["instance"]["instanceId"] == "i1"
    status, body = await get(eureka, "/eureka/apps/ORDER-SERVICE", "application/json")
    assert len(json.loads(body)["application"]["instance"]) == 2
    assert (await get(eureka, "/eureka/apps/NOPE", "application/json"))[0] == 404


async def test_xml_without_accept_and_when_forced(eureka: FakeEureka) -> None:
    eureka.register("order-service", "i1", "10.0.0.1", 8080)
    for accept in (None, "application/xml"):
        _, body = await get(eureka, "/eureka/apps", accept)
        root = ElementTree.fromstring(body)
        assert root.tag == "applications"
        instance = root.find("application/instance")
        assert instance is not None
        assert instance.findtext("overriddenstatus") == "UNKNOWN"
        port = instance.find("port")
        assert port is not None and (port.text, port.get("enabled")) == ("8080", "true")
        metadata = instance.find("metadata")
        assert metadata is not None and metadata.get("class") == "java.util.Collections$EmptyMap"
    eureka.force_xml = True
    _, body = await get(eureka, "/eureka/apps", "application/json")
    assert body.lstrip().startswith(b"<?xml")


async def test_gzip_when_asked(eureka: FakeEureka) -> None:
    eureka.register("a", "i1", "10.0.0.1", 80)
    async with (
        aiohttp.ClientSession(auto_decompress=False) as http,
        http.get(
            eureka.url + "apps", headers={"Accept": "application/json", "Accept-Encoding": "gzip"}
        ) as resp,
    ):
        assert resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(await resp.read()))["applications"]["apps__hashcode"] == "UP_1_"


async def test_delta_window_keeps_the_latest_change_per_instance(eureka: FakeEureka) -> None:
    eureka.register("a", "i1", "10.0.0.1", 80)
    eureka.register("a", "i2", "10.0.0.2", 80)
    eureka.override_status("a", "i2", "OUT_OF_SERVICE")
    eureka.cancel("a", "i1")
    _, body = await get(eureka, "/eureka/apps/delta", "application/json")
    delta = json.loads(body)["applications"]
    assert delta["apps__hashcode"] == "OUT_OF_SERVICE_1_"
    assert delta["versions__delta"] == "4"
    (app,) = delta["application"]
    assert [(i["instanceId"], i["actionType"], i["status"]) for i in app["instance"]] == [
        ("i2", "MODIFIED", "OUT_OF_SERVICE"),
        ("i1", "DELETED", "UP"),
    ]
    # A DOWN report beats an override (DownOrStartingRule).
    eureka.set_status("a", "i2", "DOWN")
    assert eureka.hashcode == "DOWN_1_"

    eureka.forget_recent_changes()
    _, body = await get(eureka, "/eureka/apps/delta", "application/json")
    assert json.loads(body)["applications"]["application"] == []

    eureka.delta_disabled = True
    assert (await get(eureka, "/eureka/apps/delta"))[0] == 403


async def test_registration_is_validated(eureka: FakeEureka) -> None:
    good = {
        "instanceId": "i1",
        "hostName": "h1",
        "app": "A",
        "ipAddr": "10.0.0.1",
        "port": {"$": 80, "@enabled": "true"},
        "dataCenterInfo": {
            "@class": "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo",
            "name": "MyOwn",
        },
    }
    async with aiohttp.ClientSession() as http:

        async def post(app: str, instance: dict[str, Any]) -> int:
            async with http.post(eureka.url + f"apps/{app}", json={"instance": instance}) as resp:
                return resp.status

        assert await post("A", {**good, "ipAddr": ""}) == 400
        assert await post("B", good) == 400  # mismatched appName
        assert await post("A", {**good, "dataCenterInfo": {}}) == 400
        assert await post("a", good) == 204
    assert eureka.instances("A")["i1"].port == 80


async def test_outage_and_recovery_keep_port_and_state(eureka: FakeEureka) -> None:
    eureka.register("a", "i1", "10.0.0.1", 80)
    port = eureka.port
    await eureka.go_down()
    with pytest.raises(aiohttp.ClientConnectionError):
        await get(eureka, "/eureka/apps")
    eureka.register("a", "i2", "10.0.0.2", 80)
    await eureka.come_back()
    assert eureka.port == port
    _, body = await get(eureka, "/eureka/apps", "application/json")
    assert json.loads(body)["applications"]["apps__hashcode"] == "UP_2_"
    eureka.failing = 503
    assert (await get(eureka, "/eureka/apps"))[0] == 503


async def test_garbage_replaces_document_fields(eureka: FakeEureka) -> None:
    eureka.garbage("a", "bad", ipAddr="not-an-ip", port={"$": "x", "@enabled": "true"}, metadata=None)
    _, body = await get(eureka, "/eureka/apps", "application/json")
    (instance,) = json.loads(body)["applications"]["application"][0]["instance"]
    assert (instance["ipAddr"], instance["port"]["$"]) == ("not-an-ip", "x")
    assert "metadata" not in instance
    _, body = await get(eureka, "/eureka/apps")
    assert ElementTree.fromstring(body).findtext("application/instance/ipAddr") == "not-an-ip"
