"""Reading Eureka documents: JSON and XML give the same instances, old single-object forms, the reconcile
hashcode, and what counts as malformed; app names that collide on one hostname."""

from __future__ import annotations

import json
from xml.etree import ElementTree

import pytest

from tests.fakes.eureka_server import FakeEureka, to_xml
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus_watch_eureka.codec import DocumentError, parse_document, reconcile_hashcode
from xdsbus_watch_eureka.services import build_services

# docs/registries.md §3.1's sample, with the old Jettison habit of a bare object for a single element.
OLD_STYLE = {
    "applications": {
        "versions__delta": "1",
        "apps__hashcode": "UP_1_",
        "application": {
            "name": "ORDER-SERVICE",
            "instance": {
                "instanceId": "10.0.0.1:order-service:8080",
                "hostName": "10.0.0.1",
                "app": "ORDER-SERVICE",
                "ipAddr": "10.0.0.1",
                "status": "UP",
                "port": {"$": "8080", "@enabled": "true"},
                "securePort": {"$": "443", "@enabled": "false"},
                "dataCenterInfo": {
                    "@class": "com.amazon.AmazonInfo",
                    "name": "Amazon",
                    "metadata": {"availability-zone": "us-east-1a"},
                },
                "metadata": {"zone": "z1", "management.port": "8081"},
            },
        },
    }
}


def test_hashcode_is_sorted_status_counts() -> None:
    assert reconcile_hashcode(["UP", "DOWN", "UP"]) == "DOWN_1_UP_2_"
    assert reconcile_hashcode(["UP", "OUT_OF_SERVICE"]) == "OUT_OF_SERVICE_1_UP_1_"
    assert reconcile_hashcode([]) == ""


def test_old_style_single_objects() -> None:
    doc = parse_document(json.dumps(OLD_STYLE).encode())
    assert (doc.versions_delta, doc.apps_hashcode) == ("1", "UP_1_")
    (instance,) = doc.instances
    assert (instance.app, instance.address, instance.port, instance.healthy) == (
        "ORDER-SERVICE",
        "10.0.0.1",
        8080,
        True,
    )
    # On AWS the data center's availability zone wins over metadata.zone.
    assert instance.zone == "us-east-1a"
    assert instance.problem == ""


async def test_json_and_xml_read_alike() -> None:
    async with FakeEureka() as server:
        server.register("a", "i1", "10.0.0.1", 80, metadata={"protocol": "HTTP2"})
        server.register("a", "i2", "10.0.0.2", 80, status="STARTING")
        server.register(
            "b", "i3", "fd00::1", 81, port_enabled=False, secure_port=8443, secure_port_enabled=True
        )
        server.garbage("b", "i4", ipAddr="nope")
        server.override_status("a", "i1", "OUT_OF_SERVICE")
        full = server.full_document()
        delta = server.delta_document()
    for tree in (full, delta):
        as_json = parse_document(json.dumps(tree).encode())
        as_xml = parse_document(ElementTree.tostring(to_xml("applications", tree["applications"])))
        assert as_json == as_xml
        assert as_json.apps_hashcode == "OUT_OF_SERVICE_1_STARTING_1_UP_2_"
    by_id = {i.instance_id: i for i in parse_document(json.dumps(full).encode()).instances}
    assert (by_id["i1"].status, by_id["i1"].protocol, by_id["i1"].action) == (
        "OUT_OF_SERVICE",
        "HTTP2",
        "ADDED",
    )
    assert (by_id["i3"].address, by_id["i3"].port, by_id["i3"].secure) == ("fd00::1", 8443, True)
    assert not by_id["i4"].usable and "not an IP" in by_id["i4"].problem


def test_malformed_entries() -> None:
    def doc(instance: object, **apps: object) -> bytes:
        return json.dumps(
            {"applications": {"application": [{"name": "A", "instance": [instance]}], **apps}}
        ).encode()

    unkeyed = parse_document(doc({"ipAddr": "10.0.0.1", "status": "DOWN"}))
    assert unkeyed.instances == [] and unkeyed.unkeyed_statuses == {"DOWN": 1}
    assert unkeyed.problems == [("A/?", "instance without app name or instanceId/hostName")]
    assert unkeyed.apps_hashcode is None

    odd = parse_document(doc({"instanceId": "i", "ipAddr": "10.0.0.1", "status": "SLEEPY", "metadata": "x"}))
    (instance,) = odd.instances
    # Unknown status reads UNKNOWN (InstanceStatus.toEnum); no port fields means Eureka's defaults: the
    # plain port enabled but no number, so no endpoint.
    assert instance.status == "UNKNOWN" and not instance.usable
    assert "metadata is not a map" in instance.problem and "no valid port" in instance.problem

    for body in (b"", b"nonsense", b"{}", b"[1]", b"<foo/>", b"<applications"):
        with pytest.raises(DocumentError):
            parse_document(body)


def test_colliding_app_names() -> None:
    doc = parse_document(
        json.dumps(
            {
                "applications": {
                    "application": [
                        {"name": n, "instance": [{"instanceId": n, "ipAddr": "10.0.0.1", "port": 80}]}
                        for n in ("A_B", "A-B")
                    ]
                }
            }
        ).encode()
    )
    apps = {i.app: {i.instance_id: i} for i in doc.instances}
    services, problems = build_services(RegistryConfig(type="eureka", name="m"), apps)
    assert list(services) == ["A-B.eureka"] and services["A-B.eureka"].service == "A-B"
    assert problems == [("A_B", "same hostname A-B.eureka as application A-B; ignored")]


def test_one_endpoint_per_address_the_up_one_wins() -> None:
    def instance(iid: str, status: str) -> dict[str, object]:
        return {"instanceId": iid, "ipAddr": "10.0.0.1", "port": 80, "status": status}

    body = {
        "applications": {
            "application": [{"name": "A", "instance": [instance("new", "UP"), instance("old", "DOWN")]}]
        }
    }
    doc = parse_document(json.dumps(body).encode())
    apps = {"A": {i.instance_id: i for i in doc.instances}}
    services, _ = build_services(RegistryConfig(type="eureka", name="m"), apps)
    assert [(e.address, e.port, e.healthy) for e in services["A.eureka"].endpoints] == [
        ("10.0.0.1", 80, True)
    ]
