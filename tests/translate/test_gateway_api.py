"""Gateway API through the translator: GatewayClass/Gateway/HTTPRoute/GRPCRoute/ReferenceGrant to
listeners, virtual hosts and routes, with their statuses. Every scenario ends equal to a full build."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm

from tests.translate.gateway_api_objects import (
    NS,
    GatewayHarness,
    backend,
    cluster_of,
    cond,
    gateway,
    gateway_class,
    http_route,
    listener,
    namespace,
    reference_grant,
    rule,
    service,
    svc_cluster,
    weighted,
)
from tests.translate.translator_harness import A_CERT, ingress_body, tls_secret
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import LISTENER, ROUTE
from xdsbus.model.gateway_api import GRPCMethodMatch
from xdsbus.model.routes import PathKind, PathMatch
from xdsbus.translate.gateway_api.grpcroute import method_path
from xdsbus.translate.gateway_api.hostnames import intersect
from xdsbus.translate.gateway_api.httproute import GatewayRouteError


def _base(h: GatewayHarness, *listeners: dict) -> None:
    h.put(gateway_class(), gateway("gw", list(listeners) or None), service("web"), service("web2"))


def test_simple_route_serves_the_listener_port_and_reports_status() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(http_route())
    routes = h.routes("*")
    assert [cluster_of(r) for r in routes] == [svc_cluster()]
    assert routes[0].match.prefix == "/"
    gc = h.gw_status("GatewayClass", "higress")
    assert cond(gc, "Accepted") == ("True", "Accepted")
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert gw.state is Verdict.ACCEPTED
    assert cond(gw, "Programmed") == ("True", "Programmed")
    assert gw.listeners[0].attached_routes == 1
    route = h.gw_status("HTTPRoute", f"{NS}/route")
    assert cond(route, "Accepted", 0) == ("True", "Accepted")
    assert cond(route, "ResolvedRefs", 0) == ("True", "ResolvedRefs")
    assert route.parents[0].conditions[0].observed_generation == 1
    assert route.parents[0].controller_name == "higress.io/gateway-controller"
    h.assert_matches_full_build()
    # Removing the route empties the host; removing the Gateway drops its status.
    h.remove(http_route())
    assert "*" not in [next(iter(v.domains)) for v in h.route_config().virtual_hosts]
    assert h.status("HTTPRoute", f"{NS}/route") is None
    h.assert_matches_full_build()


def test_other_controllers_classes_are_ignored() -> None:
    h = GatewayHarness()
    h.put(gateway_class("other", "example.com/ctl"), gateway("gw", cls="other"), service("web"), http_route())
    assert not h.route_config().virtual_hosts
    assert h.status("GatewayClass", "other") is None
    assert h.status("Gateway", f"{NS}/gw") is None
    assert h.status("HTTPRoute", f"{NS}/route") is None
    h.assert_matches_full_build()


def test_gateway_ports_get_their_own_listeners() -> None:
    h = GatewayHarness()
    _base(h, listener("web", 8080))
    h.put(http_route())
    assert "0.0.0.0_8080" in h.names(LISTENER)
    manager = hcm.HttpConnectionManager()
    h.get(LISTENER, "0.0.0.0_8080", listener_pb2.Listener).filter_chains[0].filters[0].typed_config.Unpack(
        manager
    )
    assert manager.rds.route_config_name == "http.8080"
    assert [cluster_of(r) for r in h.routes("*", "http.8080")] == [svc_cluster()]
    h.assert_matches_full_build()
    h.put(gateway("gw", [listener("web", 9090)]))
    assert "0.0.0.0_8080" not in h.names(LISTENER)
    assert "http.8080" not in h.names(ROUTE)
    assert "0.0.0.0_9090" in h.names(LISTENER)
    h.assert_matches_full_build()


def test_protocol_conflict_with_the_ingress_https_port() -> None:
    h = GatewayHarness()
    _base(h, listener("bad", 443, "HTTP"), listener("http"))
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert [c.reason for c in gw.listeners[0].conditions if c.type == "Conflicted"] == ["ProtocolConflict"]
    assert [c.status for c in gw.listeners[1].conditions if c.type == "Programmed"] == ["True"]
    unsupported = gateway("gw", [listener("udp", 53, "UDP")])
    h.put(unsupported)
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert [c.reason for c in gw.listeners[0].conditions if c.type == "Accepted"] == ["UnsupportedProtocol"]
    assert cond(gw, "Programmed") == ("False", "Invalid")
    h.assert_matches_full_build()


def test_allowed_routes_namespaces() -> None:
    h = GatewayHarness()
    _base(
        h,
        listener("same", 80, from_="Same"),
        listener("all", 8081, from_="All"),
        listener("sel", 8082, from_="Selector", selector={"team": "a"}),
    )
    h.put(service("web", "apps"), http_route("r", namespace="apps", rules=[rule(backends=[backend()])]))
    status = h.gw_status("HTTPRoute", "apps/r")
    assert status.state is Verdict.ACCEPTED
    assert "http.80" in h.names(ROUTE) and not h.route_config().virtual_hosts
    assert [cluster_of(r) for r in h.routes("*", "http.8081")] == [svc_cluster(namespace="apps")]
    assert "http.8082" not in h.names(ROUTE)
    h.put(namespace("apps", {"team": "a"}))
    assert [cluster_of(r) for r in h.routes("*", "http.8082")] == [svc_cluster(namespace="apps")]
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert [lst.attached_routes for lst in gw.listeners] == [0, 1, 1]
    h.assert_matches_full_build()
    # Only the `same` listener, by sectionName: not allowed.
    h.put(http_route("r", namespace="apps", parents=[{"name": "gw", "namespace": NS, "sectionName": "same"}]))
    status = h.gw_status("HTTPRoute", "apps/r")
    assert status.state is Verdict.REJECTED
    assert cond(status, "Accepted", 0) == ("False", "NotAllowedByListeners")
    # A sectionName that names no listener, a port no listener has.
    h.put(http_route("r", namespace="apps", parents=[{"name": "gw", "namespace": NS, "sectionName": "nope"}]))
    assert cond(h.gw_status("HTTPRoute", "apps/r"), "Accepted", 0) == ("False", "NoMatchingParent")
    h.put(http_route("r", namespace="apps", parents=[{"name": "gw", "namespace": NS, "port": 8082}]))
    assert cond(h.gw_status("HTTPRoute", "apps/r"), "Accepted", 0) == ("True", "Accepted")
    h.assert_matches_full_build()


def test_hostname_intersection() -> None:
    assert intersect("", []) == ["*"]
    assert intersect("", ["a.com"]) == ["a.com"]
    assert intersect("*.a.com", []) == ["*.a.com"]
    assert intersect("*.a.com", ["x.a.com", "y.b.com", "a.com"]) == ["x.a.com"]
    assert intersect("x.a.com", ["*.a.com"]) == ["x.a.com"]
    assert intersect("*.a.com", ["*.x.a.com"]) == ["*.x.a.com"]
    assert intersect("*.x.a.com", ["*.a.com"]) == ["*.x.a.com"]
    assert intersect("b.com", ["a.com"]) == []


def test_listener_hostnames_isolate_routes() -> None:
    h = GatewayHarness()
    _base(h, listener("foo", 80, hostname="foo.com"), listener("wild", 80, hostname="*.bar.com"))
    h.put(
        http_route("any", parents=[{"name": "gw", "namespace": NS}]),
        http_route("x", hostnames=["x.bar.com", "nope.com"], rules=[rule(backends=[backend("web2")])]),
        http_route("miss", hostnames=["nope.com"]),
    )
    domains = sorted(next(iter(v.domains)) for v in h.route_config().virtual_hosts)
    assert domains == ["*.bar.com", "foo.com", "x.bar.com"]
    assert [cluster_of(r) for r in h.routes("x.bar.com")] == [svc_cluster("web2")]
    miss = h.gw_status("HTTPRoute", f"{NS}/miss")
    assert cond(miss, "Accepted", 0) == ("False", "NoMatchingListenerHostname")
    # The same port and hostname twice on one Gateway conflict.
    h.put(gateway("gw", [listener("a", 80, hostname="foo.com"), listener("b", 80, hostname="foo.com")]))
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert [c.reason for lst in gw.listeners for c in lst.conditions if c.type == "Conflicted"] == [
        "HostnameConflict",
        "HostnameConflict",
    ]
    h.assert_matches_full_build()


def test_matches_and_precedence_across_routes() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            "old",
            created="2025-01-01T00:00:00Z",
            rules=[
                rule(path=("PathPrefix", "/")),
                rule(
                    matches=[
                        {
                            "path": {"type": "PathPrefix", "value": "/v2/"},
                            "headers": [{"name": "Version", "value": "two"}],
                        }
                    ],
                    backends=[backend("web2")],
                ),
            ],
        ),
        http_route(
            "new",
            rules=[
                rule(path=("Exact", "/one")),
                rule(matches=[{"path": {"type": "PathPrefix", "value": "/v2"}, "method": "POST"}]),
                rule(
                    matches=[
                        {
                            "path": {"type": "RegularExpression", "value": "/re/[0-9]+"},
                            "queryParams": [{"name": "q", "value": "1"}],
                        }
                    ]
                ),
                rule(matches=[{"path": {"type": "PathPrefix", "value": "/v2"}}]),
            ],
        ),
    )
    routes = h.routes()
    names = [r.name for r in routes]
    assert names == [
        "httproute/infra/new/rule/0/match/0",  # exact
        "httproute/infra/new/rule/1/match/0",  # /v2 with a method
        "httproute/infra/old/rule/1/match/0",  # /v2 with a header (older route, but method first)
        "httproute/infra/new/rule/3/match/0",  # /v2 plain
        "httproute/infra/old/rule/0/match/0",  # /
        "httproute/infra/new/rule/2/match/0",  # regex last
    ]
    assert routes[0].match.path == "/one"
    assert routes[2].match.path_separated_prefix == "/v2"
    assert routes[2].match.headers[0].name == "version"
    assert routes[1].match.headers[0].name == ":method"
    assert routes[5].match.safe_regex.regex == "/re/[0-9]+"
    assert routes[5].match.query_parameters[0].string_match.exact == "1"
    h.assert_matches_full_build()


def test_header_filters_redirects_and_rewrites() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(
                    path=("PathPrefix", "/hdr"),
                    filters=[
                        {
                            "type": "RequestHeaderModifier",
                            "requestHeaderModifier": {
                                "set": [{"name": "X-Set", "value": "s"}],
                                "add": [{"name": "X-Add", "value": "a"}],
                                "remove": ["X-Remove"],
                            },
                        },
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {"set": [{"name": "X-Resp", "value": "r"}]},
                        },
                    ],
                ),
                rule(
                    path=("PathPrefix", "/redirect"),
                    backends=[],
                    filters=[
                        {"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}
                    ],
                ),
                rule(
                    path=("PathPrefix", "/prefix"),
                    backends=[],
                    filters=[
                        {
                            "type": "RequestRedirect",
                            "requestRedirect": {
                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}
                            },
                        }
                    ],
                ),
                rule(
                    path=("PathPrefix", "/strip"),
                    filters=[
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {
                                "hostname": "h.com",
                                "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"},
                            },
                        }
                    ],
                ),
                rule(
                    path=("PathPrefix", "/full"),
                    filters=[
                        {
                            "type": "URLRewrite",
                            "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/one"}},
                        }
                    ],
                ),
                rule(
                    path=("PathPrefix", "/mirror"),
                    filters=[
                        {
                            "type": "RequestMirror",
                            "requestMirror": {"backendRef": backend("web2"), "percent": 25},
                        }
                    ],
                ),
            ]
        )
    )
    by_path = {r.match.path_separated_prefix: r for r in h.routes()}
    hdr = by_path["/hdr"]
    assert {(o.header.key, o.header.value, o.append_action) for o in hdr.request_headers_to_add} == {
        ("X-Add", "a", 0),
        ("X-Set", "s", 2),
    }
    assert list(hdr.request_headers_to_remove) == ["X-Remove"]
    assert hdr.response_headers_to_add[0].header.key == "X-Resp"
    redirect = by_path["/redirect"].redirect
    assert redirect.https_redirect and redirect.port_redirect == 443
    assert redirect.response_code == rc.RedirectAction.MOVED_PERMANENTLY
    prefix = by_path["/prefix"].redirect
    assert prefix.prefix_rewrite == "/new" and prefix.port_redirect == 80
    assert prefix.response_code == rc.RedirectAction.FOUND
    strip = by_path["/strip"].route
    assert (strip.regex_rewrite.pattern.regex, strip.regex_rewrite.substitution) == ("^/strip/*", "/")
    assert strip.host_rewrite_literal == "h.com"
    assert by_path["/full"].route.regex_rewrite.substitution == "/one"
    mirror = by_path["/mirror"].route.request_mirror_policies[0]
    assert mirror.cluster == svc_cluster("web2")
    assert mirror.runtime_fraction.default_value.numerator == 250_000
    h.assert_matches_full_build()


def test_weights_invalid_backends_and_missing_backend_refs() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/w"), backends=[backend("web", weight=70), backend("web2", weight=0)]),
                rule(path=("Exact", "/zero"), backends=[backend("web", weight=0)]),
                rule(
                    path=("Exact", "/partial"),
                    backends=[backend("web", weight=1), backend("missing", weight=1)],
                ),
                rule(path=("Exact", "/invalid"), backends=[backend("web", kind="Pod")]),
                rule(path=("Exact", "/none"), backends=[]),
                rule(
                    path=("Exact", "/per-backend"),
                    backends=[
                        backend(
                            "web",
                            filters=[
                                {
                                    "type": "RequestHeaderModifier",
                                    "requestHeaderModifier": {"set": [{"name": "X-B", "value": "1"}]},
                                }
                            ],
                        )
                    ],
                ),
            ]
        )
    )
    by_path = {r.match.path: r for r in h.routes()}
    assert weighted(by_path["/w"]) == [(svc_cluster(), 70), (svc_cluster("web2"), 0)]
    assert by_path["/zero"].direct_response.status == 500
    partial = by_path["/partial"]
    assert weighted(partial) == [(svc_cluster(), 1), ("outbound|1||backend.xdsbus.invalid", 1)]
    assert partial.route.cluster_not_found_response_code == rc.RouteAction.INTERNAL_SERVER_ERROR
    assert by_path["/invalid"].direct_response.status == 500
    assert by_path["/none"].direct_response.status == 500
    entry = by_path["/per-backend"].route.weighted_clusters.clusters[0]
    assert entry.request_headers_to_add[0].header.key == "X-B"
    status = h.gw_status("HTTPRoute", f"{NS}/route")
    assert cond(status, "Accepted", 0) == ("True", "Accepted")
    assert cond(status, "ResolvedRefs", 0) == ("False", "BackendNotFound")
    h.assert_matches_full_build()
    # The missing Service appears: its share is served.
    h.put(service("missing"))
    partial = {r.match.path: r for r in h.routes()}["/partial"]
    assert weighted(partial) == [(svc_cluster(), 1), (svc_cluster("missing"), 1)]
    h.assert_matches_full_build()


def test_cross_namespace_backend_needs_a_reference_grant() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        service("web", "backends"), http_route(rules=[rule(backends=[backend("web", namespace="backends")])])
    )
    assert h.routes()[0].direct_response.status == 500
    assert cond(h.gw_status("HTTPRoute", f"{NS}/route"), "ResolvedRefs", 0) == ("False", "RefNotPermitted")
    h.put(reference_grant("allow", "backends", "HTTPRoute", NS, "Service"))
    assert cluster_of(h.routes()[0]) == svc_cluster(namespace="backends")
    assert cond(h.gw_status("HTTPRoute", f"{NS}/route"), "ResolvedRefs", 0) == ("True", "ResolvedRefs")
    h.assert_matches_full_build()
    h.put(reference_grant("allow", "backends", "HTTPRoute", NS, "Service", "other"))
    assert h.routes()[0].direct_response.status == 500
    h.assert_matches_full_build()


def test_https_listener_with_cross_namespace_certificate() -> None:
    h = GatewayHarness()
    certs = [{"kind": "Secret", "group": "", "name": "cert", "namespace": "certs"}]
    _base(h, listener("https", 443, "HTTPS", hostname="a.example.com", certs=certs))
    h.put(tls_secret("cert", A_CERT, namespace="certs"), http_route())
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert [c.reason for c in gw.listeners[0].conditions if c.type == "ResolvedRefs"] == ["RefNotPermitted"]
    assert "0.0.0.0_443" not in h.names(LISTENER)
    h.put(reference_grant("certs", "certs", "Gateway", NS, "Secret"))
    chains = h.chains()
    rds, context = chains["a.example.com"]
    assert rds == "https.443.gateway/a.example.com"
    assert context.common_tls_context.tls_certificate_sds_secret_configs[0].name == "kubernetes://certs/cert"
    assert "kubernetes://certs/cert" in h.names(
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
    )
    assert [cluster_of(r) for r in h.routes("a.example.com", rds)] == [svc_cluster()]
    h.assert_matches_full_build()
    # The secret goes: the listener is no longer programmed.
    h.remove(tls_secret("cert", A_CERT, namespace="certs"))
    gw = h.gw_status("Gateway", f"{NS}/gw")
    assert [c.reason for c in gw.listeners[0].conditions if c.type == "ResolvedRefs"] == [
        "InvalidCertificateRef"
    ]
    assert "0.0.0.0_443" not in h.names(LISTENER)
    h.assert_matches_full_build()


def test_gateway_and_ingress_share_the_http_port() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        service("ing", "default", (80,)),
        ingress_body("ing", [("a.example.com", [("/ingress", "ing", 80)])]),
        http_route(hostnames=["a.example.com", "b.example.com"]),
    )
    names = [next(iter(v.domains)) for v in h.route_config().virtual_hosts]
    assert names == ["a.example.com", "b.example.com"]
    merged = h.routes("a.example.com")
    assert [r.match.path_separated_prefix or r.match.prefix for r in merged] == ["/ingress", "/"]
    assert cluster_of(merged[0]) == "outbound|80||ing.default.svc.cluster.local"
    assert cluster_of(merged[1]) == svc_cluster()
    h.assert_matches_full_build()
    # The Ingress changes: the merged host follows.
    h.put(ingress_body("ing", [("a.example.com", [("/other", "ing", 80)])]))
    assert [r.match.path_separated_prefix or r.match.prefix for r in h.routes("a.example.com")] == [
        "/other",
        "/",
    ]
    h.assert_matches_full_build()


def test_grpc_route() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            "grpc",
            kind="GRPCRoute",
            rules=[
                {
                    "matches": [
                        {"method": {"service": "pkg.Echo", "method": "Ping"}},
                        {"method": {"service": "pkg.Other"}},
                    ],
                    "backendRefs": [backend("web")],
                }
            ],
        )
    )
    routes = h.routes()
    assert routes[0].match.path == "/pkg.Echo/Ping"
    assert routes[1].match.prefix == "/pkg.Other/"
    # The backend port speaks HTTP/1 by its Service: the route uses an HTTP/2 policy cluster.
    assert cluster_of(routes[0]).startswith("outbound|8080|p-")
    assert cluster_of(routes[0]) in {
        n for n in h.names("type.googleapis.com/envoy.config.cluster.v3.Cluster")
    }
    assert h.gw_status("GRPCRoute", f"{NS}/grpc").state is Verdict.ACCEPTED
    h.assert_matches_full_build()


def test_timeouts_and_retries() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/t"), timeouts={"request": "10s", "backendRequest": "500ms"}),
                rule(
                    path=("Exact", "/r"),
                    timeouts={"backendRequest": "1s"},
                    retry={"codes": [500], "attempts": 3},
                ),
            ]
        )
    )
    by_path = {r.match.path: r for r in h.routes()}
    assert by_path["/t"].route.timeout.ToMilliseconds() == 500
    retry = by_path["/r"].route.retry_policy
    assert retry.num_retries.value == 3
    assert list(retry.retriable_status_codes) == [500]
    assert retry.per_try_timeout.ToMilliseconds() == 1000
    h.assert_matches_full_build()


def test_undecodable_objects_are_rejected_alone() -> None:
    h = GatewayHarness()
    _base(h)
    bad = http_route("bad")
    bad["spec"]["rules"] = "nope"
    h.put(bad, http_route())
    assert h.gw_status("HTTPRoute", f"{NS}/bad").state is Verdict.REJECTED
    assert cluster_of(h.routes()[0]) == svc_cluster()
    h.assert_matches_full_build()


def test_a_route_with_some_invalid_rules_is_partially_invalid() -> None:
    h = GatewayHarness()
    _base(h)
    bad_filter = [{"type": "ExtensionRef", "extensionRef": {"group": "x.io", "kind": "Thing", "name": "t"}}]
    h.put(
        http_route(
            rules=[
                rule(path=("PathPrefix", "/good")),
                rule(path=("PathPrefix", "/bad"), filters=bad_filter),
                rule(path=("RegularExpression", "/re.*"), timeouts={"request": "soon"}),
            ]
        )
    )
    status = h.gw_status("HTTPRoute", f"{NS}/route")
    assert cond(status, "Accepted", 0) == ("True", "Accepted")
    assert cond(status, "PartiallyInvalid", 0) == ("True", "UnsupportedValue")
    message = next(c.message for c in status.parents[0].conditions if c.type == "PartiallyInvalid")
    assert message.startswith("invalid rule(s) 1, 2: ")
    assert "filter ExtensionRef is not supported" in message and "'soon'" in message
    # The valid rule serves; the invalid ones answer 500.
    routes = {r.match.path_separated_prefix or r.match.safe_regex.regex: r for r in h.routes()}
    assert cluster_of(routes["/good"]) == svc_cluster()
    assert routes["/bad"].direct_response.status == 500
    assert routes["/re.*"].direct_response.status == 500
    h.assert_matches_full_build()
    # Fixed: the condition goes.
    h.put(http_route(rules=[rule(path=("PathPrefix", "/good"))]))
    status = h.gw_status("HTTPRoute", f"{NS}/route")
    assert [c.type for c in status.parents[0].conditions] == ["Accepted", "ResolvedRefs"]
    h.assert_matches_full_build()


# Envoy refuses it: RE2 program size 246 > 100 (docs/design.md §6).
OVERSIZED_REGEX = "/api/[a-z0-9]{1,64}/items/[0-9]{1,20}"
OVERSIZED_REASON = "has RE2 program size 246, over Envoy's limit of 100 (re2.max_program_size)"


def test_regexes_envoy_would_refuse_make_their_rule_invalid_alone() -> None:
    """A path, header or query regex Envoy would refuse (bad syntax or a program over its size limit)
    invalidates its rule only: Envoy never sees it, the route is PartiallyInvalid with the reason, and
    the other rules, simple regexes included, serve."""
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("RegularExpression", "/ok/[0-9]+")),
                rule(path=("RegularExpression", OVERSIZED_REGEX)),
                rule(
                    matches=[{"headers": [{"type": "RegularExpression", "name": "X-Id", "value": "(a)\\1"}]}]
                ),
                rule(
                    matches=[
                        {
                            "path": {"type": "PathPrefix", "value": "/q"},
                            "queryParams": [
                                {"type": "RegularExpression", "name": "id", "value": OVERSIZED_REGEX}
                            ],
                        }
                    ]
                ),
            ]
        )
    )
    status = h.gw_status("HTTPRoute", f"{NS}/route")
    assert cond(status, "Accepted", 0) == ("True", "Accepted")
    assert cond(status, "PartiallyInvalid", 0) == ("True", "UnsupportedValue")
    message = next(c.message for c in status.parents[0].conditions if c.type == "PartiallyInvalid")
    assert message.startswith("invalid rule(s) 1, 2, 3: ")
    assert f"rule 1: path regex {OVERSIZED_REGEX!r} {OVERSIZED_REASON}; the match is not served" in message
    assert "rule 2: header X-Id regex '(a)\\\\1' is not a valid RE2 regular expression" in message
    assert (
        f"rule 3: query parameter id regex {OVERSIZED_REGEX!r} {OVERSIZED_REASON}; it answers 500" in message
    )
    regexes = [r.match.safe_regex.regex for r in h.routes() if r.match.safe_regex.regex]
    assert regexes == ["/ok/[0-9]+"]
    assert all(
        m.string_match.safe_regex.regex in ("", "/ok/[0-9]+")
        for r in h.routes()
        for m in [*r.match.headers, *r.match.query_parameters]
    )
    h.assert_matches_full_build()


def test_grpc_method_regex_envoy_would_refuse_is_an_error() -> None:
    ok = method_path(GRPCMethodMatch(type="RegularExpression", service="pkg\\.Svc", method="Get.*"))
    assert ok == PathMatch(kind=PathKind.REGEX, value="/pkg\\.Svc/Get.*")
    with pytest.raises(GatewayRouteError) as exc:
        method_path(GRPCMethodMatch(type="RegularExpression", service="[a-z0-9]{1,64}", method="[0-9]{1,20}"))
    assert "method regex '/[a-z0-9]{1,64}/[0-9]{1,20}' has RE2 program size" in str(exc.value)
