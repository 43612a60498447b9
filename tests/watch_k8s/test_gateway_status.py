"""Gateway API status: the builder's verdicts in KV xdsbus_status written back to the objects by the
lease holder."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from tests.fakes.kube_api import GATEWAY_API_CRDS, FakeKubeApi
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import StartWatcher, custom, install, wait_synced
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import Condition, ListenerStatus, ObjectStatus, ParentStatus, Verdict
from xdsbus.events import Op
from xdsbus_dev.harness.processes import eventually
from xdsbus_watch_k8s.gateway_status import wanted_status
from xdsbus_watch_k8s.status_writer import lease_name

GW = "gateway.networking.k8s.io/v1"
CONTROLLER = "higress.io/gateway-controller"
SOURCE = "k8s/default"


async def _true(value: bool) -> bool:
    return value


def cond(type_: str, reason: str, generation: int = 1, status: str = "True") -> Condition:
    return Condition(type=type_, status=status, reason=reason, message="ok", observed_generation=generation)


def objects(kube: FakeKubeApi) -> None:
    install(kube, *GATEWAY_API_CRDS)
    kube.create(custom(GW, "GatewayClass", "higress", None, controllerName=CONTROLLER))
    kube.create(
        custom(
            GW,
            "Gateway",
            "gw",
            "shop",
            gatewayClassName="higress",
            listeners=[{"name": "http", "port": 80, "protocol": "HTTP"}],
        )
    )
    route = custom(GW, "HTTPRoute", "r", "shop", parentRefs=[{"name": "gw"}])
    route["status"] = {
        "parents": [
            {
                "parentRef": {"name": "other"},
                "controllerName": "example.com/other",
                "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted"}],
            }
        ]
    }
    kube.create(route)


def statuses(generation: int = 1) -> list[ObjectStatus]:
    parent_ref: dict[str, str | int] = {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "namespace": "shop",
        "name": "gw",
    }
    return [
        ObjectStatus(
            kind="GatewayClass",
            source=SOURCE,
            key="higress",
            state=Verdict.ACCEPTED,
            conditions=[cond("Accepted", "Accepted", generation)],
        ),
        ObjectStatus(
            kind="Gateway",
            source=SOURCE,
            key="shop/gw",
            state=Verdict.ACCEPTED,
            conditions=[
                cond("Accepted", "Accepted", generation),
                cond("Programmed", "Programmed", generation),
            ],
            listeners=[
                ListenerStatus(
                    name="http", attached_routes=1, conditions=[cond("Accepted", "Accepted", generation)]
                )
            ],
            addresses=["10.0.0.1", "gw.example.com"],
        ),
        ObjectStatus(
            kind="HTTPRoute",
            source=SOURCE,
            key="shop/r",
            state=Verdict.ACCEPTED,
            parents=[
                ParentStatus(
                    parent_ref=parent_ref,
                    controller_name=CONTROLLER,
                    conditions=[
                        cond("Accepted", "Accepted", generation),
                        cond("ResolvedRefs", "ResolvedRefs", generation),
                    ],
                )
            ],
        ),
        # Another source's object of the same name: not this watcher's to write.
        ObjectStatus(
            kind="GatewayClass",
            source="k8s/other",
            key="higress",
            state=Verdict.REJECTED,
            conditions=[cond("Accepted", "Invalid", generation, "False")],
        ),
    ]


def status_of(kube: FakeKubeApi, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    obj = kube.get(GW, kind, namespace, name) or {}
    return obj.get("status") or {}


def written(kube: FakeKubeApi) -> bool:
    return {w.kind for w in kube.status_writes} == {"GatewayClass", "Gateway", "HTTPRoute"}


async def test_gateway_api_status_is_written(
    kube: FakeKubeApi, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    objects(kube)
    await status_store.publish(bus, statuses())
    await start_watcher()
    await eventually(lambda: _true(written(kube)), what="gateway api status writes")
    await eventually(
        lambda: _true(len(status_of(kube, "HTTPRoute", "shop", "r").get("parents", [])) == 2), what="route"
    )
    assert all(w.method == "PATCH" for w in kube.status_writes)

    (gc_cond,) = status_of(kube, "GatewayClass", None, "higress")["conditions"]
    assert gc_cond["type"] == "Accepted" and gc_cond["status"] == "True"
    assert gc_cond["observedGeneration"] == 1 and gc_cond["lastTransitionTime"]

    gw = status_of(kube, "Gateway", "shop", "gw")
    assert [c["type"] for c in gw["conditions"]] == ["Accepted", "Programmed"]
    assert all(c["observedGeneration"] == 1 for c in gw["conditions"])
    (listener,) = gw["listeners"]
    assert listener["name"] == "http" and listener["attachedRoutes"] == 1
    assert listener["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"},
        {"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"},
    ]
    assert listener["conditions"][0]["reason"] == "Accepted"
    assert gw["addresses"] == [
        {"type": "IPAddress", "value": "10.0.0.1"},
        {"type": "Hostname", "value": "gw.example.com"},
    ]

    parents = status_of(kube, "HTTPRoute", "shop", "r")["parents"]
    assert parents[0]["controllerName"] == "example.com/other"  # another controller's entry is kept
    ours = parents[1]
    assert ours["controllerName"] == CONTROLLER
    assert ours["parentRef"]["name"] == "gw" and ours["parentRef"]["namespace"] == "shop"
    assert [(c["type"], c["observedGeneration"]) for c in ours["conditions"]] == [
        ("Accepted", 1),
        ("ResolvedRefs", 1),
    ]

    # The same verdicts again, then a changed one: only the change is written, and unchanged
    # conditions keep their lastTransitionTime.
    await wait_synced(events, "GatewayClass", "Gateway", "HTTPRoute")
    count = len(kube.status_writes)
    await status_store.publish(bus, statuses())
    await asyncio.sleep(0.5)
    assert len(kube.status_writes) == count
    before = status_of(kube, "Gateway", "shop", "gw")["conditions"][0]["lastTransitionTime"]
    await status_store.publish(bus, [statuses(generation=2)[1]])
    await eventually(
        lambda: _true(status_of(kube, "Gateway", "shop", "gw")["conditions"][0]["observedGeneration"] == 2),
        what="generation 2",
    )
    assert len(kube.status_writes) == count + 1 and kube.status_writes[-1].kind == "Gateway"
    assert status_of(kube, "Gateway", "shop", "gw")["conditions"][0]["lastTransitionTime"] == before
    # Status writes publish no events.
    assert len(events.of(Op.UPSERT, "Gateway")) == 1


async def test_standby_writes_no_gateway_api_status(
    kube: FakeKubeApi, bus: Bus, events: EventLog, start_watcher: StartWatcher
) -> None:
    objects(kube)
    revision = await bus.leases.create(lease_name("default"), b"someone-else")

    async def hold() -> None:
        nonlocal revision
        while True:
            await asyncio.sleep(0.5)
            revision = await bus.leases.update(lease_name("default"), b"someone-else", last=revision)

    holder = asyncio.create_task(hold())
    try:
        await start_watcher(instance_id="standby")
        await status_store.publish(bus, statuses())
        await wait_synced(events, "GatewayClass", "Gateway", "HTTPRoute")
        await asyncio.sleep(1.0)
        assert kube.status_writes == []
    finally:
        holder.cancel()
    await bus.leases.delete(lease_name("default"))  # the holder goes away: this one takes over
    await eventually(lambda: _true(written(kube)), what="status written after the takeover")


def test_gateway_addresses_fall_back_to_the_watchers_own() -> None:
    """A builder without --gateway-address leaves the addresses to watch-k8s's --gateway-address."""
    obj = {"spec": {"listeners": []}, "status": {}}
    status = ObjectStatus(kind="Gateway", source=SOURCE, key="shop/gw", state=Verdict.ACCEPTED)
    wanted = wanted_status(status, obj, addresses=("192.0.2.7",))
    assert wanted["addresses"] == [{"type": "IPAddress", "value": "192.0.2.7"}]
    # The builder's addresses win when it has some.
    status = msgspec.structs.replace(status, addresses=["gw.example.com"])
    assert wanted_status(status, obj, addresses=("192.0.2.7",))["addresses"] == [
        {"type": "Hostname", "value": "gw.example.com"}
    ]
