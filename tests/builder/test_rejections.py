"""Bad input is rejected alone, with a reason a user can act on, and nothing else is lost: undecodable
events and malformed objects land in KV xdsbus_status (and `xdsbus status`), the builder keeps running and
every good event still makes its version."""

from __future__ import annotations

import msgspec

from tests.builder.support import (
    cli,
    cluster,
    resources_at,
    running_builder,
    wait_for_caught_up,
)
from tests.support.objects import endpoint_slice, service
from tests.support.sources import ScriptedSource
from xdsbus import status_store
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_dev.harness.processes import eventually

SUBJECT = "xdsbus.events.test.scripted.Service"


async def _status(bus, kind: str, key: str):
    for s in await status_store.read_all(bus):
        if s.kind == kind and s.key == key:
            return s
    return None


async def test_malformed_events_are_rejected_and_the_builder_keeps_going(bus, nats_server):
    src = ScriptedSource(bus)
    async with running_builder(bus) as builder:
        await src.put(service("a"))
        await wait_for_caught_up(bus)

        garbage = (await bus.js.publish(SUBJECT, b"\xc1\xc1 this is not msgpack")).seq
        no_key = msgspec.msgpack.encode(
            {"v": 1, "source": "test/scripted", "kind": "Service", "op": "upsert", "body": service("z")}
        )
        missing_key = (await bus.js.publish(SUBJECT, no_key)).seq
        await src.put(service("b"))
        after = await wait_for_caught_up(bus)
        assert not builder.done(), "the builder stopped on a malformed event"

        rejected = await eventually(lambda: _status(bus, "Event", str(missing_key)), what="the rejection")
        assert rejected.source == SUBJECT
        assert rejected.state == "rejected"
        assert rejected.reason == "upsert of Service without a key"
        garbage_status = await _status(bus, "Event", str(garbage))
        assert garbage_status is not None and garbage_status.source == SUBJECT
        assert garbage_status.reason.startswith("undecodable envelope: ")

    clusters = {k.name for k in await resources_at(bus, after.version) if k.type_url == CLUSTER}
    assert clusters == {cluster("a"), cluster("b")}
    assert after.first_seq <= garbage < missing_key <= after.last_seq

    rows = await cli(nats_server.url, "status")
    events = {row["key"]: row for row in rows if row["kind"] == "Event"}
    assert events[str(missing_key)] == {
        "kind": "Event",
        "source": SUBJECT,
        "key": str(missing_key),
        "state": "rejected",
        "reason": "upsert of Service without a key",
    }
    assert "undecodable envelope" in events[str(garbage)]["reason"]
    text = await cli(nats_server.url, "status", as_json=False)
    assert f"Event/{missing_key} ({SUBJECT}): rejected: upsert of Service without a key" in text


async def test_invalid_service_is_rejected_alone_naming_the_field(bus, nats_server):
    src = ScriptedSource(bus)
    bad = service("x")
    bad["spec"]["ports"] = [{"name": "http", "port": "abc"}]
    async with running_builder(bus):
        await src.put(service("a"))
        await src.put(bad)
        await src.put(service("b"))
        first = await wait_for_caught_up(bus)

        clusters = {k.name for k in await resources_at(bus, first.version) if k.type_url == CLUSTER}
        assert clusters == {cluster("a"), cluster("b")}

        rows = await cli(nats_server.url, "status", "Service/default/x")
        assert len(rows) == 1
        assert rows[0]["state"] == "rejected"
        assert rows[0]["reason"].startswith("Service default/x: ")
        assert "$.spec.ports[0].port" in rows[0]["reason"]
        accepted = await cli(nats_server.url, "status", "Service/default/a")
        assert [r["state"] for r in accepted] == ["accepted"]

        # Fixed at the source: accepted, and its cluster appears.
        await src.put(service("x"))
        fixed = await wait_for_caught_up(bus)
        assert cluster("x") in {k.name for k in await resources_at(bus, fixed.version)}
        await eventually(lambda: _accepted(bus, "Service", "default/x"), what="default/x accepted")


async def _accepted(bus, kind: str, key: str) -> bool:
    status = await _status(bus, kind, key)
    return status is not None and status.state == "accepted" and not status.reason


async def test_endpoint_slice_with_an_impossible_port_is_rejected_alone(bus, nats_server):
    """A slice port Envoy cannot hold (negative, over 65535) must not take the builder down: the slice is
    rejected, naming the field, and the other Services still get their versions."""
    src = ScriptedSource(bus)
    bad = endpoint_slice("a", ["10.0.0.1"])
    bad["ports"][0]["port"] = -1
    async with running_builder(bus) as builder:
        await src.put(service("a"))
        await src.put(bad)
        await src.put(service("b"))
        await src.put(endpoint_slice("b", ["10.0.0.2"]))
        version = await wait_for_caught_up(bus)
        assert not builder.done(), "the builder stopped on a malformed EndpointSlice"
        rows = await cli(nats_server.url, "status", "EndpointSlice/default/a-1")
    assert [r["state"] for r in rows] == ["rejected"]
    assert rows[0]["reason"].startswith("EndpointSlice default/a-1: ")
    assert "$.ports[0].port" in rows[0]["reason"]
    resources = {(k.type_url, k.name) for k in await resources_at(bus, version.version)}
    assert {(CLUSTER, cluster("a")), (CLUSTER, cluster("b")), (ENDPOINT, cluster("b"))} <= resources
