"""Per-Gateway data planes (docs/design.md §5): each Gateway's derived scope `gateway.<ns>.<name>` holds
only its own listeners, routes, clusters, endpoints and secrets, while the shared scope merges them all."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_pb2

from tests.support.objects import ingress
from tests.translate.gateway_api_objects import (
    NS,
    GatewayHarness,
    backend,
    gateway,
    gateway_class,
    http_route,
    listener,
    rule,
    service,
    svc_cluster,
)
from tests.translate.test_global_options import higress_config
from tests.translate.translator_harness import A_CERT, tls_secret, unpack
from xdsbus.contract.scopes import gateway_scope, gateway_scope_of, is_scope
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.translator import Translator

A = gateway_scope(NS, "a")
B = gateway_scope(NS, "b")


def two_gateways() -> list[dict[str, Any]]:
    """Gateways a and b, both on port 80, each with a `/` route to its own Service."""
    return [
        gateway_class(),
        gateway("a", [listener("http", 80)]),
        gateway("b", [listener("http", 80)]),
        service("web-a"),
        service("web-b"),
        http_route("route-a", [rule(backends=[backend("web-a")])], parents=[{"name": "a", "namespace": NS}]),
        http_route("route-b", [rule(backends=[backend("web-b")])], parents=[{"name": "b", "namespace": NS}]),
    ]


def endpoint_slice(service_name: str, address: str) -> dict[str, Any]:
    """One ready endpoint for the port `p8080` of a Service of gateway_api_objects."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-1",
            "namespace": NS,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": "p8080", "port": 3000}],
    }


def scope_table(h: GatewayHarness, scope: str) -> ResourceTable:
    h.translator.gateway_scopes.refresh()
    return h.translator.gateway_scopes.table(scope)


def names(table: ResourceTable, type_url: str) -> set[str]:
    return {key.name for key, _ in table.items() if key.type_url == type_url}


def slash_clusters(table: ResourceTable, config: str = "http.80") -> list[str]:
    resource = table.get(ROUTE, config)
    assert resource is not None, config
    routes = unpack(resource.body, route_pb2.RouteConfiguration)
    return [r.route.cluster for vh in routes.virtual_hosts for r in vh.routes if r.match.prefix == "/"]


def test_scope_names() -> None:
    assert gateway_scope("infra", "web.v1") == "gateway.infra.web.v1"
    assert gateway_scope_of("infra/web.v1") == "gateway.infra.web.v1"
    assert gateway_scope_of("not a gateway") is None
    assert gateway_scope_of("Infra/web") is None
    assert is_scope("default") and is_scope("gateway.infra.web.v1")
    assert not is_scope("gateway.infra") and not is_scope("a.b")


def test_two_gateways_on_port_80_each_get_their_own_scope() -> None:
    h = GatewayHarness()
    h.put(*two_gateways(), endpoint_slice("web-a", "10.0.0.1"))
    assert h.translator.gateway_scopes.scopes() == (A, B)
    # The shared scope merges both on one listener: the older Gateway's route wins `/`.
    assert h.names(LISTENER) == {"0.0.0.0_80"}
    a, b = scope_table(h, A), scope_table(h, B)
    assert names(a, LISTENER) == names(b, LISTENER) == {"0.0.0.0_80"}
    assert names(a, ROUTE) == names(b, ROUTE) == {"http.80"}
    assert slash_clusters(a) == [svc_cluster("web-a")]
    assert slash_clusters(b) == [svc_cluster("web-b")]
    assert names(a, CLUSTER) == {svc_cluster("web-a")}
    assert names(b, CLUSTER) == {svc_cluster("web-b")}
    assert names(a, ENDPOINT) == {svc_cluster("web-a")}
    # What a scope takes from the shared table is the shared bytes (same digests).
    key = next(k for k, _ in a.items() if k.type_url == ENDPOINT)
    assert a.get(ENDPOINT, key.name) == h.translator.table.get(ENDPOINT, key.name)
    h.assert_matches_full_build()


def test_a_scope_follows_endpoint_changes_and_holds_no_ingress_host() -> None:
    h = GatewayHarness()
    h.put(*two_gateways(), ingress("site", "site.example.com", "web-a", namespace=NS))
    before, b_before = scope_table(h, A).digest(), scope_table(h, B).digest()
    assert "site.example.com" not in str(h.translator.gateway_scopes.table(A).get(ROUTE, "http.80"))
    h.put(endpoint_slice("web-a", "10.0.0.7"))
    after = scope_table(h, A)
    assert after.digest() != before and names(after, ENDPOINT) == {svc_cluster("web-a")}
    # Gateway b's scope does not change with a's endpoints.
    assert scope_table(h, B).digest() == b_before


def test_https_listener_names_its_certificate() -> None:
    h = GatewayHarness()
    certs = [{"name": "cert", "namespace": NS}]
    h.put(
        gateway_class(),
        gateway("a", [listener("https", 8443, "HTTPS", hostname="a.example.com", certs=certs)]),
        service("web-a"),
        tls_secret("cert", A_CERT, namespace=NS),
        http_route("route-a", [rule(backends=[backend("web-a")])], parents=[{"name": "a", "namespace": NS}]),
    )
    table = scope_table(h, A)
    assert names(table, LISTENER) == {"0.0.0.0_8443"}
    assert len(names(table, SECRET)) == 1 and names(table, SECRET) <= h.names(SECRET)


def test_a_deleted_gateway_leaves_the_scopes_and_the_others_stay() -> None:
    h = GatewayHarness()
    h.put(*two_gateways())
    b_table = scope_table(h, B)
    h.remove(gateway("a", [listener("http", 80)]))
    assert h.translator.gateway_scopes.scopes() == (B,)
    assert h.translator.gateway_scopes.table(B) is b_table
    h.put(gateway("a", [listener("http", 80)]))
    assert h.translator.gateway_scopes.scopes() == (A, B)


def test_the_same_events_give_the_same_scope_digests() -> None:
    def digests(order: list[int]) -> dict[str, str]:
        h = GatewayHarness()
        objects = two_gateways()
        h.put(*[objects[i] for i in order])
        scopes = h.translator.gateway_scopes
        scopes.refresh()
        return {scope: scopes.table(scope).digest() for scope in scopes.scopes()}

    forward = digests(list(range(7)))
    assert forward == digests(list(reversed(range(7))))
    # A fresh translator's full build gives the same scopes too.
    h = GatewayHarness()
    h.put(*two_gateways())
    fresh = Translator(h.settings, secret_box=h.box)
    fresh.full_build(h.state)
    fresh.gateway_scopes.refresh()
    assert {s: fresh.gateway_scopes.table(s).digest() for s in fresh.gateway_scopes.scopes()} == forward


def test_a_scope_carries_the_global_options_and_their_tracing_cluster() -> None:
    h = GatewayHarness()
    h.put(*two_gateways(), service("z", ports=(9411,)))
    h.put(
        higress_config(
            {"tracing": {"enable": True, "sampling": 50, "zipkin": {"service": "z", "port": "9411"}}}
        )
    )
    table = scope_table(h, A)
    tracing = {name for name in names(table, CLUSTER) if name.startswith("tracing|")}
    assert len(tracing) == 1 and tracing <= h.names(CLUSTER)
    shared_listener = h.translator.table.get(LISTENER, "0.0.0.0_80")
    assert shared_listener is not None
    # The listener is the Gateway's own, with the same connection manager options as the shared one.
    assert table.get(LISTENER, "0.0.0.0_80") is not None
    h.assert_matches_full_build()


def test_a_scope_keeps_its_table_while_empty() -> None:
    h = GatewayHarness()
    # A Gateway whose only listener cannot be programmed (a protocol nobody serves): no resources.
    h.put(gateway_class(), gateway("a", [listener("udp", 9000, "UDP")]))
    scopes = h.translator.gateway_scopes
    assert scopes.scopes() == (A,)
    table = scopes.table(A)
    h.put(service("web-a"))
    h.put(gateway("a", [listener("udp", 9001, "UDP")]))
    assert scopes.table(A) is table
