"""The Nacos -> RegistryService mapping (Higress' nacos v2 watcher), without a server."""

from __future__ import annotations

from typing import Any

import pytest
from v2.nacos import Instance

from xdsbus.model.mcpbridge import RegistryConfig, Vport, VportService
from xdsbus.model.registry import RegistryEndpoint
from xdsbus_watch_nacos.convert import (
    build_service,
    higress_nacos_hostname,
    higress_weight,
    protocol_of,
    to_endpoint,
)
from xdsbus_watch_nacos.registry import refresh_interval, should_watch

CONFIG = RegistryConfig(type="nacos2", name="prod", domain="nacos", port=8848)


def inst(ip: str = "10.0.0.1", port: int = 8080, **fields: Any) -> Instance:
    return Instance(ip=ip, port=port, **fields)


def test_hostname_replaces_underscores_in_the_suffix_only() -> None:
    assert higress_nacos_hostname("svc-a", "DEFAULT_GROUP", "public") == "svc-a.DEFAULT-GROUP.public.nacos"
    assert higress_nacos_hostname("order_svc", "G_1", "ns_a") == "order_svc.G-1.ns-a.nacos"
    dubbo = "providers:com.dubbo.demo.api.DemoService:1.0.0:dev"
    assert higress_nacos_hostname(dubbo, "DEFAULT_GROUP", "public") == f"{dubbo}.DEFAULT-GROUP.public.nacos"


@pytest.mark.parametrize(
    ("weight", "expected"), [(1.0, 1), (0.0, 1), (0.4, 1), (1.5, 2), (2.5, 3), (2.49, 2), (100.0, 100)]
)
def test_weight_rounds_half_away_from_zero_and_is_at_least_one(weight: float, expected: int) -> None:
    assert higress_weight(weight) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", "HTTP"),
        ("http", "HTTP"),
        ("gRPC", "GRPC"),
        ("triple", "GRPC"),
        ("tri", "GRPC"),
        ("http2", "HTTP2"),
        ("HTTPS", "HTTPS"),
        ("grpcs", "GRPCS"),
        ("dubbo", "HTTP"),
        ("weird", "HTTP"),
    ],
)
def test_protocol_from_metadata(value: str, expected: str) -> None:
    assert protocol_of({"protocol": value}) == expected


def test_vport_per_service_case_insensitive_else_default() -> None:
    config = RegistryConfig(
        type="nacos2", vport=Vport(default=80, services=[VportService(name="Web", value=8000)])
    )
    assert config.vport_for("web") == 8000
    assert config.vport_for("other") == 80
    assert CONFIG.vport_for("web") == 0


@pytest.mark.parametrize(
    ("instance", "reason"),
    [
        (inst(ip=""), "empty address"),
        (inst(ip="not an ip"), "invalid address 'not an ip'"),
        (inst(ip="999.1.1.1"), "invalid address '999.1.1.1'"),
        (inst(port=0), "invalid port 0"),
        (inst(port=65536), "invalid port 65536"),
        (inst(weight=-1.0), "invalid weight -1.0 (Nacos allows 0..10000)"),
        (inst(weight=float("nan")), "invalid weight nan (Nacos allows 0..10000)"),
        (inst(weight=10001.0), "invalid weight 10001.0 (Nacos allows 0..10000)"),
    ],
)
def test_malformed_instances(instance: Instance, reason: str) -> None:
    assert to_endpoint(instance) == reason


def test_endpoint_fields() -> None:
    assert to_endpoint(
        inst(ip="fd00::1", weight=3.0, metadata={"a": "b", "n": 1, "t": True})
    ) == RegistryEndpoint(address="fd00::1", port=8080, weight=3, metadata={"a": "b", "n": "1", "t": "true"})
    assert to_endpoint(inst(ip="backend.example.com")) == RegistryEndpoint(
        address="backend.example.com", port=8080
    )
    assert not to_endpoint(inst(healthy=False)).healthy  # type: ignore[union-attr]
    assert not to_endpoint(inst(enabled=False)).healthy  # type: ignore[union-attr]


def test_build_service_is_independent_of_instance_order() -> None:
    a = inst("10.0.0.2", 9000, metadata={"protocol": "grpc"})
    b = inst("10.0.0.1", 8080)
    first, problems = build_service(CONFIG, "DEFAULT_GROUP", "svc", "public", [a, b])
    second, _ = build_service(CONFIG, "DEFAULT_GROUP", "svc", "public", [b, a])
    assert first == second and problems == []
    assert first is not None
    # Port and protocol come from the first instance by (address, port).
    assert (first.port, first.protocol) == (8080, "HTTP")
    assert [e.address for e in first.endpoints] == ["10.0.0.1", "10.0.0.2"]


def test_build_service_skips_garbage_and_higress_registrations() -> None:
    instances = [
        inst("10.0.0.1"),
        inst("", 80),
        inst("10.0.0.3", metadata={"register-resource": "mcp-bridge"}),
        inst("10.0.0.1", 8080, clusterName="OTHER", weight=5.0),  # same address in another cluster
    ]
    service, problems = build_service(CONFIG, "G", "svc", "public", instances)
    assert service is not None
    assert [(e.address, e.weight) for e in service.endpoints] == [("10.0.0.1", 5)]
    assert [(p.what, p.reason) for p in problems] == [("svc.G.public.nacos instance '':80", "empty address")]


def test_build_service_without_usable_instances_is_none() -> None:
    assert build_service(CONFIG, "G", "svc", "public", []) == (None, [])
    service, problems = build_service(CONFIG, "G", "svc", "public", [inst(port=0)])
    assert service is None and len(problems) == 1


def test_refresh_interval_and_service_filter() -> None:
    assert refresh_interval(CONFIG) == 30.0
    assert refresh_interval(RegistryConfig(type="nacos2", nacos_refresh_interval=60_000_000_000)) == 60.0
    assert refresh_interval(RegistryConfig(type="nacos2", nacos_refresh_interval=1_000_000_000)) == 10.0
    assert should_watch("svc") and not should_watch("") and not should_watch("consumers:com.demo.Api::")
