"""route-limit-*, rpc-destination-name and Http2Rpc, the annotations nothing reads, quoted header-control
lines, the exact host's fallback to its wildcard host, and McpBridge proxies (docs/higress.md §1, §2, §4).

Each behaviour was checked against Higress's code (file names in docs/higress.md) and, where it has one,
its e2e test under test/e2e/conformance/tests."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from google.protobuf import json_format

from tests.support.objects import endpoint_slice, service
from tests.translate.ingress_objects import H, N
from tests.translate.translator_harness import HTTP_LISTENER, Harness, ingress_body
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import CLUSTER, LISTENER
from xdsbus.model.routes import HeaderMutation, LocalRateLimit
from xdsbus.translate import http2rpc
from xdsbus.translate.dataplane import UNSUPPORTED_HTTP2RPC
from xdsbus.translate.ingress_annotations import parse_annotations
from xdsbus.translate.registry_services import bridge_services
from xdsbus.translate.settings import TranslatorSettings

LIMIT_FILTER = "envoy.filters.http.local_ratelimit"


def _web(h: Harness) -> None:
    h.put(service("web", ports=(80,)), endpoint_slice("web", ["10.0.0.1"]))


def _routes(h: Harness, host: str) -> list[rc.Route]:
    return list(h.vhost(host).routes)


# -- route-limit-* (local_rate_limit.go) ---------------------------------------------------------


def test_route_limit_rpm_beats_rps_and_the_bucket_is_rate_times_multiplier() -> None:
    p = parse_annotations({H + "route-limit-rpm": "10", H + "route-limit-rps": "3"})
    assert p.rate_limit == LocalRateLimit(tokens_per_fill=10, max_tokens=50, fill_seconds=60)
    assert p.problems == (f'annotation {H}route-limit-rps: "3" is ignored: route-limit-rpm is set and wins',)
    p = parse_annotations({H + "route-limit-rps": "2", H + "route-limit-burst-multiplier": "3"})
    assert p.rate_limit == LocalRateLimit(tokens_per_fill=2, max_tokens=6, fill_seconds=1)
    assert p.problems == ()


def test_bad_route_limit_values_are_problems_naming_the_annotation() -> None:
    p = parse_annotations({H + "route-limit-rpm": "0", H + "route-limit-rps": "5"})
    # An unusable rpm falls back to rps, as Higress's else-if does.
    assert p.rate_limit == LocalRateLimit(tokens_per_fill=5, max_tokens=25, fill_seconds=1)
    assert p.problems == (f'annotation {H}route-limit-rpm: "0" is out of range 1-4294967295',)
    p = parse_annotations({H + "route-limit-rps": "many", H + "route-limit-burst-multiplier": "-1"})
    assert p.rate_limit is None
    assert p.problems == (
        f'annotation {H}route-limit-burst-multiplier: "-1" is out of range 1-4294967295',
        f'annotation {H}route-limit-rps: "many" is not an integer',
    )
    p = parse_annotations({H + "route-limit-rps": "4294967295"})
    assert p.rate_limit is None and "over Envoy's limit" in p.problems[0]
    # H only: the nginx prefix does nothing, and says so.
    p = parse_annotations({N + "route-limit-rps": "5"})
    assert p.rate_limit is None
    assert p.problems == (
        f'annotation {N}route-limit-rps: "5" has no effect: Higress reads it only as '
        "higress.io/route-limit-rps",
    )


def test_route_limit_is_a_per_route_token_bucket_answering_429() -> None:
    # As higress-group/istio pilot/pkg/networking/core/v1alpha3/mseingress/local_rate_limit.go writes it.
    h = Harness()
    _web(h)
    h.put(
        ingress_body(
            "limited", [("a.example.com", [("/", "web", 80)])], annotations={H + "route-limit-rps": "2"}
        )
    )
    (route,) = _routes(h, "a.example.com")
    limit = local_rate_limit_pb2.LocalRateLimit()
    assert route.typed_per_filter_config[LIMIT_FILTER].Unpack(limit)
    assert json_format.MessageToDict(limit) == {
        "statPrefix": "http_local_rate_limiter",
        "status": {"code": "TooManyRequests"},  # 429
        "tokenBucket": {"maxTokens": 10, "tokensPerFill": 2, "fillInterval": "1s"},
        "filterEnabled": {"defaultValue": {"numerator": 100}, "runtimeKey": "local_rate_limit_enabled"},
        "filterEnforced": {"defaultValue": {"numerator": 100}, "runtimeKey": "local_rate_limit_enforced"},
        "responseHeadersToAdd": [
            {
                "header": {"key": "x-local-rate-limit", "value": "true"},
                "appendAction": "OVERWRITE_IF_EXISTS_OR_ADD",
            }
        ],
    }
    assert h.warnings("default/limited") == []
    h.assert_matches_full_build()


# -- annotations nothing reads (ignored.py) -------------------------------------------------------


def test_every_annotation_nothing_reads_is_a_warning_with_its_reason() -> None:
    p = parse_annotations(
        {
            N + "server-snippet": "x",
            N + "auth-url": "http://auth",
            N + "auth-type": "basic",
            N + "proxy-body-size": "8m",
            N + "limit-rps": "5",
            N + "proxy-read-timeout": "60",
            H + "mcp-server": "true",
            H + "mcp-server-match-rule-type": "prefix",
            N + "affinity-mode": "persistent",
            H + "no-such-thing": "1",
            "kubernetes.io/ingress.class": "nginx",
        }
    )
    reasons = {problem.split(":")[0].removeprefix("annotation "): problem for problem in p.problems}
    assert len(p.problems) == 10
    assert "snippets" in reasons[f"{N}server-snippet"]
    assert "ext-auth" in reasons[f"{N}auth-url"]
    assert "removed in Higress 2.0" in reasons[f"{N}auth-type"]
    assert "body size" in reasons[f"{N}proxy-body-size"]
    assert "route-limit-rps" in reasons[f"{N}limit-rps"]
    assert "higress.io/timeout" in reasons[f"{N}proxy-read-timeout"]
    assert (
        "MCP server" in reasons[f"{H}mcp-server"]
        and "MCP server" in reasons[f"{H}mcp-server-match-rule-type"]
    )
    assert "never reads it" in reasons[f"{N}affinity-mode"]
    assert "does not read this annotation" in reasons[f"{H}no-such-thing"]


def test_annotations_something_reads_are_not_reported() -> None:
    p = parse_annotations(
        {
            N + "enable-cors": "true",
            H + "exact-match-header-x-user": "a",
            N + "match-method": "GET",
            H + "rewrite-path": "/b",
            H + "route-limit-rpm": "60",
            H + "route-limit-burst-multiplier": "2",
        }
    )
    assert p.problems == ()


# -- header control quotes (header_control.go trimQuotes; e2e httproute-request-header-control.yaml) ----


def test_header_control_lines_take_single_or_double_quoted_names_and_values() -> None:
    p = parse_annotations(
        {
            H + "request-header-control-add": "stage test\ncanary true\n"
            + 'x-test "higress; test=true"\n\'x-test2\' "higress; test=false"\n"x-test3" \'v 3\'',
        }
    )
    assert p.header_control.request == HeaderMutation(
        add=(
            ("stage", "test"),
            ("canary", "true"),
            ("x-test", "higress; test=true"),
            ("x-test2", "higress; test=false"),
            ("x-test3", "v 3"),
        )
    )
    assert p.problems == ()


# -- exact host falls back to its wildcard host (e2e httproute-exact-domain-fallback) ---------------


def test_an_exact_host_falls_back_to_its_wildcard_hosts_routes() -> None:
    h = Harness()
    h.put(service("v1", ports=(8080,)), service("v2", ports=(8080,)))
    h.put(ingress_body("wildcard-ingress", [("*.foo.com", [("/", "v1", 8080)])]))
    body = ingress_body("exact-ingress", [("www.foo.com", [("/bar", "v2", 8080)])])
    body["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "Exact"
    h.put(body)
    routes = _routes(h, "www.foo.com")
    # www.foo.com/bar -> v2 first; anything else under www.foo.com -> the wildcard's v1 route.
    assert [(r.match.path or r.match.prefix, r.route.cluster) for r in routes] == [
        ("/bar", "outbound|8080||v2.default.svc.cluster.local"),
        ("/", "outbound|8080||v1.default.svc.cluster.local"),
    ]
    assert routes[1].match.headers[0].name == ":authority"
    # The wildcard's change reaches the exact host.
    h.put(ingress_body("wildcard-ingress", [("*.foo.com", [("/", "v2", 8080)])]))
    assert _routes(h, "www.foo.com")[1].route.cluster == "outbound|8080||v2.default.svc.cluster.local"
    h.assert_matches_full_build()
    h.delete("Ingress", "default/wildcard-ingress")
    assert len(_routes(h, "www.foo.com")) == 1
    h.assert_matches_full_build()


# -- Http2Rpc and rpc-destination-name (http2rpc.go, ingress_config.go) ------------------------------

DUBBO = {
    "apiVersion": "networking.higress.io/v1",
    "kind": "Http2Rpc",
    "metadata": {"name": "httproute-http2rpc-demo", "namespace": "higress-system"},
    "spec": {
        "dubbo": {
            "service": "com.alibaba.nacos.example.dubbo.service.DemoService",
            "version": "1.0.0",
            "group": "dev",
            "methods": [
                {
                    "serviceMethod": "sayName",
                    "headersAttach": "*",
                    "httpPath": "/dubbo/hello",
                    "httpMethods": ["GET"],
                    "params": [{"paramKey": "p", "paramSource": "QUERY", "paramType": "java.lang.String"}],
                },
                {
                    "serviceMethod": "echo",
                    "headersAttach": "x-a,x-b",
                    "httpPath": "/dubbo/echo",
                    "httpMethods": ["POST", "PUT"],
                    "paramFromEntireBody": {"paramType": "java.util.Map"},
                    "params": [{"paramKey": "ignored", "paramSource": "BODY", "paramType": "int"}],
                },
                {"serviceMethod": "ping", "httpPath": "/dubbo/ping", "httpMethods": ["DELETE"]},
            ],
        }
    },
}


def _rpc_ingress() -> dict[str, Any]:
    return ingress_body(
        "rpc",
        [("rpc.example.com", [("/dubbo", "web", 80)])],
        annotations={H + "rpc-destination-name": "httproute-http2rpc-demo"},
    )


def test_on_stock_envoy_http2rpc_and_its_ingresses_are_unsupported_and_never_plain_http() -> None:
    h = Harness()
    _web(h)
    h.put(DUBBO, _rpc_ingress())
    status = h.status("Http2Rpc", "higress-system/httproute-http2rpc-demo")
    assert status is not None and status.state is Verdict.REJECTED
    assert status.reason == f"Http2Rpc higress-system/httproute-http2rpc-demo: {UNSUPPORTED_HTTP2RPC}"
    assert "--dataplane higress" in status.reason
    (warning,) = h.warnings("default/rpc")
    assert warning == (
        f'annotation {H}rpc-destination-name: "httproute-http2rpc-demo" names Http2Rpc '
        f"httproute-http2rpc-demo: {UNSUPPORTED_HTTP2RPC}; the Ingress's routes answer 503"
    )
    (route,) = _routes(h, "rpc.example.com")
    assert not route.HasField("route")
    assert route.direct_response.status == 503
    assert "--dataplane higress" in route.direct_response.body.inline_string
    h.assert_matches_full_build()


# Where each field of the generated config comes from: pkg/ingress/config/ingress_config.go at
# alibaba/higress 4e0d691 (docs/higress.md §4), line numbers in the comments.
TRANSCODER = "type.googleapis.com/envoy.extensions.filters.http.http_dubbo_transcoder.v3.HttpDubboTranscoder"
GOLDEN_ROUTE_TYPED_STRUCT = {
    "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",  # 1572
    "typeUrl": TRANSCODER,
    "value": {
        "request_validation_options": {  # 1575-1578
            "reject_unknown_method": True,
            "reject_unknown_query_parameters": True,
        },
        "url_unescape_spec": "ALL_CHARACTERS_EXCEPT_RESERVED",  # 1580
        "services_mapping": {  # 1579, one object (not a list), built at 1623-1630
            "group": "dev",  # 1625-1627: only when set
            "name": "com.alibaba.nacos.example.dubbo.service.DemoService",  # 1628
            "version": "1.0.0",  # 1629
            "method_mapping": [  # 1630
                {
                    "name": "sayName",  # 1588
                    "parameter_mapping": [  # 1598-1604, 1606
                        {
                            "extract_key": "p",  # 1600
                            "extract_key_spec": "ALL_QUERY_PARAMETER",  # 1601, Http2RpcParamSourceMap 88-96
                            "mapping_type": "java.lang.String",  # 1602
                        }
                    ],
                    "path_matcher": {
                        "match_http_method_spec": "ALL_GET",  # 1608, Http2RpcMethodMap 79-87
                        "match_pattern": "/dubbo/hello",  # 1609
                    },
                    "passthrough_setting": {"passthrough_all_headers": True},  # 1615-1616: "*"
                },
                {
                    "name": "echo",
                    # 1591-1596: paramFromEntireBody replaces params: ALL_BODY, no extract_key.
                    "parameter_mapping": [{"extract_key_spec": "ALL_BODY", "mapping_type": "java.util.Map"}],
                    # 1608: only httpMethods[0] is used.
                    "path_matcher": {"match_http_method_spec": "ALL_POST", "match_pattern": "/dubbo/echo"},
                    "passthrough_setting": {"passthrough_headers": "x-a,x-b"},  # 1617-1618: the string as is
                },
                {
                    "name": "ping",
                    "parameter_mapping": None,  # 1606: Go marshals a nil slice as null
                    "path_matcher": {"match_http_method_spec": "ALL_DELETE", "match_pattern": "/dubbo/ping"},
                    "passthrough_setting": {"passthrough_all_headers": False},  # 1613-1614: ""
                },
            ],
        },
    },
}
GOLDEN_UPGRADE = [{"upgradeType": "CONNECT", "connectConfig": {"allowPost": True}}]  # 1560-1568
GOLDEN_UPSTREAM_CONFIG = {  # 1502-1513: CLUSTER MERGE on the destination host
    "name": "envoy.upstreams.http.dubbo_tcp",
    "typedConfig": {
        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
        "typeUrl": "type.googleapis.com/envoy.extensions.upstreams.http.dubbo_tcp.v3."
        "DubboTcpConnectionPoolProto",
    },
}
GOLDEN_FILTER = {  # 1516-1546: HTTP_FILTER INSERT_BEFORE envoy.filters.http.router, once
    "name": "envoy.filters.http.http_dubbo_transcoder",
    "typedConfig": {
        "@type": "type.googleapis.com/udpa.type.v1.TypedStruct",
        "typeUrl": TRANSCODER,
    },
}


def test_on_higress_dataplane_the_route_and_cluster_are_what_higress_generates() -> None:
    h = Harness(settings=TranslatorSettings(dataplane="higress"))
    _web(h)
    h.put(DUBBO, _rpc_ingress())
    status = h.status("Http2Rpc", "higress-system/httproute-http2rpc-demo")
    assert status is not None and status.state is Verdict.ACCEPTED
    assert h.warnings("default/rpc") == []
    (route,) = _routes(h, "rpc.example.com")
    assert json_format.MessageToDict(route.typed_per_filter_config[http2rpc.DUBBO_TRANSCODER_FILTER]) == (
        GOLDEN_ROUTE_TYPED_STRUCT
    )
    assert [json_format.MessageToDict(u) for u in route.route.upgrade_configs] == GOLDEN_UPGRADE
    cluster = h.get(CLUSTER, route.route.cluster, cluster_pb2.Cluster)
    assert cluster.name != "outbound|80||web.default.svc.cluster.local"
    assert json_format.MessageToDict(cluster.upstream_config) == GOLDEN_UPSTREAM_CONFIG
    assert _filters(h)[-2:] == [GOLDEN_FILTER, {"name": "envoy.filters.http.router"}]
    h.assert_matches_full_build()


def _filters(h: Harness) -> list[dict[str, Any]]:
    """The HTTP listener's filters, each with its name and, for the transcoder, its config."""
    manager = hcm.HttpConnectionManager()
    assert (
        h.get(LISTENER, HTTP_LISTENER, listener_pb2.Listener)
        .filter_chains[0]
        .filters[0]
        .typed_config.Unpack(manager)
    )
    return [
        json_format.MessageToDict(f) if f.name == http2rpc.DUBBO_TRANSCODER_FILTER else {"name": f.name}
        for f in manager.http_filters
    ]


def test_the_transcoder_filter_is_only_on_the_higress_dataplane() -> None:
    h = Harness()
    _web(h)
    h.put(ingress_body("web", [("a.example.com", [("/", "web", 80)])]))
    assert {"name": http2rpc.DUBBO_TRANSCODER_FILTER} not in _filters(h)
    assert GOLDEN_FILTER not in _filters(h)


def test_on_higress_dataplane_a_missing_or_grpc_http2rpc_answers_503_until_fixed() -> None:
    h = Harness(settings=TranslatorSettings(dataplane="higress"))
    _web(h)
    h.put(_rpc_ingress())
    assert "names Http2Rpc httproute-http2rpc-demo: not found" in h.warnings("default/rpc")[0]
    assert _routes(h, "rpc.example.com")[0].direct_response.status == 503
    grpc = {**DUBBO, "spec": {"grpc": {}}}
    h.put(grpc)
    status = h.status("Http2Rpc", "higress-system/httproute-http2rpc-demo")
    assert status is not None and status.state is Verdict.REJECTED and "only Dubbo" in status.reason
    assert _routes(h, "rpc.example.com")[0].direct_response.status == 503
    h.put(DUBBO)
    assert h.warnings("default/rpc") == []
    assert _routes(h, "rpc.example.com")[0].HasField("route")
    h.assert_matches_full_build()


# -- McpBridge proxies (registry/proxy) ----------------------------------------------------------------


def test_mcpbridge_proxies_and_proxy_name_are_reported_unsupported() -> None:
    body = {
        "spec": {
            "proxies": [{"name": "corp", "serverAddress": "10.0.0.9", "serverPort": 3128, "type": "HTTP"}],
            "registries": [
                {"type": "dns", "name": "ext", "domain": "api.example.com", "port": 443, "proxyName": "corp"}
            ],
        }
    }
    out = bridge_services(body)
    assert [s.hostname for s in out.services] == ["ext.dns"]
    assert out.warnings == [
        "spec.proxies (corp) is not supported by xdsbus: registry services are reached directly, not through "
        "an upstream HTTP proxy",
        "registries[0] (dns/ext): proxyName 'corp' is not supported by xdsbus: registry services are reached "
        "directly, not through an upstream HTTP proxy",
    ]
