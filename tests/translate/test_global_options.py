"""higress-config and higress-https: parsing with Higress's defaults, bad values reported per key, and
what the options change in the listeners and clusters the translator publishes (docs/global-options.md)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import opentelemetry_pb2, zipkin_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from tests.support.objects import endpoint_slice, service
from tests.translate.gateway_api_objects import GatewayHarness, gateway, gateway_class, http_route, listener
from tests.translate.gateway_api_objects import service as gw_service
from tests.translate.translator_harness import (
    A_CERT,
    B_CERT,
    HTTP_LISTENER,
    HTTPS_LISTENER,
    Harness,
    ingress_body,
    tls_secret,
)
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import CLUSTER, LISTENER, SECRET
from xdsbus.translate.global_options.envoy_upstream import HTTP_PROTOCOL_OPTIONS, speaks_http2
from xdsbus.translate.global_options.https import parse_https_config_map
from xdsbus.translate.global_options.model import GlobalOptions
from xdsbus.translate.global_options.parse import parse_config_map

CONFIG_KEY = "higress-system/higress-config"
HTTPS_KEY = "higress-system/higress-https"
WEB_CLUSTER = "outbound|80||web.default.svc.cluster.local"


def config_map(name: str, data: dict[str, str], namespace: str = "higress-system") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    }


def higress_config(options: dict[str, Any] | str) -> dict[str, Any]:
    text = options if isinstance(options, str) else yaml.safe_dump(options)
    return config_map("higress-config", {"higress": text})


def manager(h: Harness) -> hcm.HttpConnectionManager:
    listener = h.get(LISTENER, HTTP_LISTENER, listener_pb2.Listener)
    out = hcm.HttpConnectionManager()
    assert listener.filter_chains[0].filters[0].typed_config.Unpack(out)
    return out


def http_filter(mgr: hcm.HttpConnectionManager, name: str, cls: type[Any]) -> Any:
    (found,) = [f for f in mgr.http_filters if f.name == name]
    out = cls()
    assert found.typed_config.Unpack(out)
    return out


def protocol_options(cluster: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    out = hpo.HttpProtocolOptions()
    assert cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(out)
    return out


# -- parsing ----------------------------------------------------------------------------------------


def test_absent_keys_take_higress_defaults() -> None:
    parsed = parse_config_map(higress_config({}))
    assert parsed.options == GlobalOptions()
    assert parsed.problems == () and parsed.error == ""
    options = parsed.options
    # Higress's values (gzip.go, tracing.go, global.go).
    assert options.gzip.enable and options.gzip.min_content_length == 1024
    assert options.gzip.compression_level == "BEST_COMPRESSION" and options.gzip.chunk_size == 4096
    assert (
        not options.tracing.enable and options.tracing.sampling == 100.0 and options.tracing.timeout_ms == 500
    )
    assert options.downstream.idle_timeout == 180 and options.downstream.max_request_headers_kb == 60
    assert options.downstream.connection_buffer_limits == 32768
    assert options.downstream.http2.initial_connection_window_size == 1048576
    assert options.upstream.idle_timeout == 10 and options.upstream.connection_buffer_limits == 10485760
    assert not options.add_x_real_ip_header and not options.disable_x_envoy_headers


def test_every_option_is_read() -> None:
    parsed = parse_config_map(
        higress_config(
            {
                "gzip": {
                    "enable": True,
                    "minContentLength": 10,
                    "contentType": ["text/plain"],
                    "disableOnEtagHeader": False,
                    "memoryLevel": 9,
                    "windowBits": 15,
                    "chunkSize": 8192,
                    "compressionLevel": "BEST_SPEED",
                    "compressionStrategy": "RLE",
                },
                "tracing": {
                    "enable": True,
                    "sampling": 50,
                    "timeout": 800,
                    "zipkin": {"service": "z", "port": "9411"},
                },
                "downstream": {
                    "idleTimeout": 7,
                    "maxRequestHeadersKb": 8,
                    "connectionBufferLimits": 4096,
                    "http2": {"maxConcurrentStreams": 9, "initialStreamWindowSize": 70000},
                },
                "upstream": {"idleTimeout": 3, "connectionBufferLimits": 2048},
                "addXRealIpHeader": True,
                "disableXEnvoyHeaders": True,
            }
        )
    )
    assert parsed.problems == ()
    o = parsed.options
    assert (o.gzip.min_content_length, o.gzip.content_type, o.gzip.disable_on_etag_header) == (
        10,
        ("text/plain",),
        False,
    )
    assert (o.gzip.memory_level, o.gzip.window_bits, o.gzip.chunk_size) == (9, 15, 8192)
    assert (o.gzip.compression_level, o.gzip.compression_strategy) == ("BEST_SPEED", "RLE")
    assert o.tracing.active and o.tracing.sampling == 50.0 and o.tracing.timeout_ms == 800
    assert o.tracing.provider is not None and (o.tracing.provider.kind, o.tracing.provider.port) == (
        "zipkin",
        9411,
    )
    assert (o.downstream.idle_timeout, o.downstream.max_request_headers_kb) == (7, 8)
    assert o.downstream.http2.max_concurrent_streams == 9
    assert o.downstream.http2.initial_stream_window_size == 70000
    assert o.downstream.http2.initial_connection_window_size == 1048576, "unset: the default"
    assert (o.upstream.idle_timeout, o.upstream.connection_buffer_limits) == (3, 2048)
    assert o.add_x_real_ip_header and o.disable_x_envoy_headers


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        ({"gzip": {"memoryLevel": 12}}, "gzip.memoryLevel: 12 is not between 1 and 9; the default 5 applies"),
        ({"gzip": {"windowBits": 8}}, "gzip.windowBits: 8 is not between 9 and 15; the default 12 applies"),
        (
            {"gzip": {"compressionLevel": "FAST"}},
            "gzip.compressionLevel: 'FAST' is not one of BEST_COMPRESSION",
        ),
        ({"gzip": {"contentType": []}}, "gzip.contentType: [] is not a non-empty list of strings"),
        (
            {"gzip": {"enable": "yes please"}},
            "gzip.enable: 'yes please' is not true or false; the default true",
        ),
        ({"tracing": {"sampling": 101}}, "tracing.sampling: 101 is not between 0 and 100"),
        ({"tracing": {"timeout": 0}}, "tracing.timeout: 0 is not between 1 and"),
        (
            {
                "tracing": {
                    "enable": True,
                    "zipkin": {"service": "z", "port": 1},
                    "skywalking": {"service": "s", "port": 2},
                }
            },
            "tracing.enable: tracing needs exactly one of zipkin, skywalking, opentelemetry",
        ),
        ({"tracing": {"enable": True, "zipkin": {"port": 1}}}, "tracing.zipkin.service: missing"),
        (
            {"downstream": {"maxRequestHeadersKb": 9000}},
            "downstream.maxRequestHeadersKb: 9000 is not between 1 and 8192",
        ),
        (
            {"downstream": {"http2": {"initialStreamWindowSize": 100}}},
            "downstream.http2.initialStreamWindowSize: 100 is not between 65535 and 2147483647",
        ),
        (
            {"downstream": {"idleTimeout": "3s"}},
            "downstream.idleTimeout: '3s' is not a whole number; the default 180",
        ),
        (
            {"upstream": {"connectionBufferLimits": -1}},
            "upstream.connectionBufferLimits: -1 is not between 1 and",
        ),
        ({"upstream": 5}, "upstream: expected a mapping, got 5; the defaults apply"),
        ({"mcpServer": {"enable": True}}, "mcpServer: Higress's MCP server"),
        ({"gzpi": {}}, "gzpi: is not a higress-config option xdsbus knows; ignored"),
        ({"downstream": {"routeTimeout": 5}}, "downstream.routeTimeout: not applied by xdsbus"),
    ],
)
def test_a_bad_value_is_reported_and_falls_back_to_its_default(options: dict[str, Any], problem: str) -> None:
    parsed = parse_config_map(higress_config(options))
    assert any(p.startswith(problem) for p in parsed.problems), parsed.problems
    assert parsed.error == ""


def test_a_bad_key_leaves_the_rest_of_its_section() -> None:
    parsed = parse_config_map(higress_config({"gzip": {"memoryLevel": 0, "windowBits": 10}}))
    assert (parsed.options.gzip.memory_level, parsed.options.gzip.window_bits) == (5, 10)


@pytest.mark.parametrize(
    ("text", "error"), [("gzip: [", "is not YAML"), ("- 1", "is not a mapping of options")]
)
def test_an_unreadable_document_rejects_with_the_defaults(text: str, error: str) -> None:
    parsed = parse_config_map(higress_config(text))
    assert error in parsed.error and parsed.options == GlobalOptions()


def test_higress_https_fallback_certificates_and_what_is_not_supported() -> None:
    cert = yaml.safe_dump(
        {
            "automaticHttps": True,
            "fallbackForInvalidSecret": True,
            "renewBeforeDays": 30,
            "acmeIssuer": [{"name": "letsencrypt", "email": "a@b.c"}],
            "credentialConfig": [
                {"domains": ["*.example.com"], "tlsSecret": "default/wild"},
                {"domains": ["www.other.com"], "tlsSecret": "other"},
                {"domains": ["acme.example.org"], "tlsIssuer": "letsencrypt", "tlsSecret": "acme"},
            ],
        }
    )
    https = parse_https_config_map(config_map("higress-https", {"cert": cert}))
    assert https.fallback_for_invalid_secret
    assert https.secret_for("a.example.com") == ("default", "wild")
    assert https.secret_for("example.com") is None
    assert https.secret_for("www.other.com") == ("higress-system", "other")
    assert https.secret_for("acme.example.org") is None
    assert any("automatic HTTPS (ACME" in p for p in https.problems)
    assert any("acmeIssuer: ACME issuers are not supported" in p for p in https.problems)
    assert any("credentialConfig[2].tlsIssuer" in p for p in https.problems)


# -- the translator -----------------------------------------------------------------------------------


def test_without_the_config_map_the_defaults_apply_gzip_included() -> None:
    h = Harness()
    h.put(service("web"), endpoint_slice("web", ["10.0.0.1"]))
    mgr = manager(h)
    names = [f.name for f in mgr.http_filters]
    # Higress inserts the compressor before CORS (gzip.go).
    assert names.index("envoy.filters.http.compressor") == names.index("envoy.filters.http.cors") - 1
    compressor = http_filter(mgr, "envoy.filters.http.compressor", compressor_pb2.Compressor)
    assert compressor.response_direction_config.common_config.min_content_length.value == 1024
    assert compressor.compressor_library.name == "text_optimized"
    library = gzip_pb2.Gzip()
    assert compressor.compressor_library.typed_config.Unpack(library)
    assert library.compression_level == gzip_pb2.Gzip.BEST_COMPRESSION and library.memory_level.value == 5
    assert not compressor.request_direction_config.common_config.enabled.default_value.value
    assert mgr.common_http_protocol_options.idle_timeout.seconds == 180
    assert mgr.stream_idle_timeout.seconds == 180 and mgr.max_request_headers_kb.value == 60
    assert mgr.http2_protocol_options.max_concurrent_streams.value == 100
    assert not mgr.HasField("tracing")
    assert "envoy.filters.http.header_mutation" not in names
    assert (
        h.get(LISTENER, HTTP_LISTENER, listener_pb2.Listener).per_connection_buffer_limit_bytes.value == 32768
    )
    cluster = h.get(CLUSTER, WEB_CLUSTER, cluster_pb2.Cluster)
    assert protocol_options(cluster).common_http_protocol_options.idle_timeout.seconds == 10
    assert cluster.per_connection_buffer_limit_bytes.value == 10485760
    assert not speaks_http2(cluster)


def test_options_change_listeners_and_clusters_and_go_back_when_removed() -> None:
    h = Harness()
    h.put(service("web"), endpoint_slice("web", ["10.0.0.1"]))
    defaults = (h.body(LISTENER, HTTP_LISTENER), h.body(CLUSTER, WEB_CLUSTER))
    h.put(
        higress_config(
            {
                "gzip": {"enable": False},
                "downstream": {"idleTimeout": 2, "maxRequestHeadersKb": 4, "connectionBufferLimits": 1000},
                "upstream": {"idleTimeout": 1, "connectionBufferLimits": 500},
                "addXRealIpHeader": True,
                "disableXEnvoyHeaders": True,
            }
        )
    )
    status = h.status("ConfigMap", CONFIG_KEY)
    assert status is not None and status.state is Verdict.ACCEPTED and status.warnings == []
    mgr = manager(h)
    names = [f.name for f in mgr.http_filters]
    assert "envoy.filters.http.compressor" not in names
    assert names[-2:] == ["envoy.filters.http.header_mutation", "envoy.filters.http.router"]
    mutation = http_filter(mgr, "envoy.filters.http.header_mutation", header_mutation_pb2.HeaderMutation)
    (added,) = mutation.mutations.request_mutations
    assert (added.append.header.key, added.append.header.value) == (
        "x-real-ip",
        "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    )
    assert http_filter(mgr, "envoy.filters.http.router", router_pb2.Router).suppress_envoy_headers
    assert (
        mgr.common_http_protocol_options.idle_timeout.seconds == 2 and mgr.max_request_headers_kb.value == 4
    )
    assert (
        h.get(LISTENER, HTTP_LISTENER, listener_pb2.Listener).per_connection_buffer_limit_bytes.value == 1000
    )
    cluster = h.get(CLUSTER, WEB_CLUSTER, cluster_pb2.Cluster)
    assert protocol_options(cluster).common_http_protocol_options.idle_timeout.seconds == 1
    assert cluster.per_connection_buffer_limit_bytes.value == 500
    h.assert_matches_full_build()
    h.delete("ConfigMap", CONFIG_KEY)
    assert (h.body(LISTENER, HTTP_LISTENER), h.body(CLUSTER, WEB_CLUSTER)) == defaults
    assert h.status("ConfigMap", CONFIG_KEY) is None
    h.assert_matches_full_build()


def test_zipkin_tracing_sends_to_the_known_service_endpoints() -> None:
    h = Harness()
    h.put(service("zipkin", ports=(9411,)), endpoint_slice("zipkin", ["10.0.0.9"], port=9411))
    h.put(
        higress_config(
            {
                "tracing": {
                    "enable": True,
                    "sampling": 25,
                    "zipkin": {"service": "zipkin.default.svc.cluster.local", "port": "9411"},
                }
            }
        )
    )
    name = "tracing|9411||zipkin.default.svc.cluster.local"
    mgr = manager(h)
    assert mgr.tracing.provider.name == "envoy.tracers.zipkin" and mgr.tracing.random_sampling.value == 25.0
    zipkin = zipkin_pb2.ZipkinConfig()
    assert mgr.tracing.provider.typed_config.Unpack(zipkin)
    assert (zipkin.collector_cluster, zipkin.collector_endpoint) == (name, "/api/v2/spans")
    assert zipkin.collector_endpoint_version == zipkin_pb2.ZipkinConfig.HTTP_JSON
    assert mgr.tracing.spawn_upstream_span.value
    assert not http_filter(mgr, "envoy.filters.http.router", router_pb2.Router).start_child_span
    cluster = h.get(CLUSTER, name, cluster_pb2.Cluster)
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.service_name == "outbound|9411||zipkin.default.svc.cluster.local"
    assert not speaks_http2(cluster)
    h.assert_matches_full_build()
    # The service goes: the collector is then resolved by DNS.
    h.remove(service("zipkin", ports=(9411,)))
    assert h.get(CLUSTER, name, cluster_pb2.Cluster).type == cluster_pb2.Cluster.STRICT_DNS
    h.assert_matches_full_build()
    h.put(higress_config({"tracing": {"enable": False, "zipkin": {"service": "z", "port": 1}}}))
    assert h.body(CLUSTER, name) is None and not manager(h).HasField("tracing")
    h.assert_matches_full_build()


def test_opentelemetry_speaks_grpc_over_http2() -> None:
    h = Harness()
    h.put(
        higress_config(
            {
                "tracing": {
                    "enable": True,
                    "timeout": 250,
                    "opentelemetry": {"service": "otel.local", "port": 4317},
                }
            }
        )
    )
    mgr = manager(h)
    otel = opentelemetry_pb2.OpenTelemetryConfig()
    assert mgr.tracing.provider.name == "envoy.tracers.opentelemetry"
    assert mgr.tracing.provider.typed_config.Unpack(otel)
    assert otel.grpc_service.envoy_grpc.cluster_name == "tracing|4317||otel.local"
    assert otel.grpc_service.timeout.ToMilliseconds() == 250
    assert otel.service_name == "higress-gateway.higress-system"
    assert speaks_http2(h.get(CLUSTER, "tracing|4317||otel.local", cluster_pb2.Cluster))


def test_a_bad_value_shows_in_the_config_map_status_and_the_rest_applies() -> None:
    h = Harness()
    h.put(higress_config({"gzip": {"memoryLevel": 99}, "downstream": {"idleTimeout": 9}}))
    status = h.status("ConfigMap", CONFIG_KEY)
    assert status is not None and status.state is Verdict.ACCEPTED
    assert status.warnings == [
        f"ConfigMap {CONFIG_KEY}: gzip.memoryLevel: 99 is not between 1 and 9; the default 5 applies"
    ]
    mgr = manager(h)
    assert mgr.common_http_protocol_options.idle_timeout.seconds == 9
    library = gzip_pb2.Gzip()
    assert http_filter(
        mgr, "envoy.filters.http.compressor", compressor_pb2.Compressor
    ).compressor_library.typed_config.Unpack(library)
    assert library.memory_level.value == 5
    h.put(higress_config("gzip: ["))
    status = h.status("ConfigMap", CONFIG_KEY)
    assert status is not None and status.state is Verdict.REJECTED
    assert status.reason.startswith(f"ConfigMap {CONFIG_KEY}: data.higress is not YAML")
    assert manager(h).common_http_protocol_options.idle_timeout.seconds == 180, "the defaults again"


def test_other_config_maps_are_reported_ignored() -> None:
    h = Harness()
    h.put(config_map("app-settings", {"a": "b"}, namespace="default"))
    status = h.status("ConfigMap", "default/app-settings")
    assert status is not None and status.state is Verdict.IGNORED
    assert (
        "ignored, only higress-system/higress-config and higress-system/higress-https are read"
        in status.reason
    )
    h.delete("ConfigMap", "default/app-settings")
    assert h.status("ConfigMap", "default/app-settings") is None


def test_higress_https_reports_acme_as_not_supported() -> None:
    h = Harness()
    h.put(
        config_map(
            "higress-https",
            {"cert": "automaticHttps: true\nacmeIssuer:\n- name: letsencrypt\n  email: a@b.c\n"},
        )
    )
    status = h.status("ConfigMap", HTTPS_KEY)
    assert status is not None and status.state is Verdict.ACCEPTED
    assert any(
        "automatic HTTPS (ACME certificates from Let's Encrypt) is not supported" in w
        for w in status.warnings
    )


def test_derived_clusters_of_annotations_take_the_upstream_options() -> None:
    h = Harness()
    h.put(
        service("web"),
        endpoint_slice("web", ["10.0.0.1"]),
        ingress_body(
            "web",
            [("a.example.com", [("/", "web", 80)])],
            annotations={"nginx.ingress.kubernetes.io/load-balance": "least_conn"},
        ),
    )

    def policy_clusters() -> list[cluster_pb2.Cluster]:
        names = sorted(n for n in h.names(CLUSTER) if n != WEB_CLUSTER)
        return [h.get(CLUSTER, n, cluster_pb2.Cluster) for n in names]

    (derived,) = policy_clusters()
    assert protocol_options(derived).common_http_protocol_options.idle_timeout.seconds == 10
    h.put(higress_config({"upstream": {"idleTimeout": 4, "connectionBufferLimits": 777}}))
    (derived,) = policy_clusters()
    assert protocol_options(derived).common_http_protocol_options.idle_timeout.seconds == 4
    assert derived.per_connection_buffer_limit_bytes.value == 777
    h.assert_matches_full_build()


def https_config(cert: dict[str, Any]) -> dict[str, Any]:
    return config_map("higress-https", {"cert": yaml.safe_dump(cert)})


def served_certificates(h: Harness) -> dict[str, str]:
    """Server name -> the SDS name of its certificate, on the HTTPS listener."""
    if h.body(LISTENER, HTTPS_LISTENER) is None:
        return {}
    return {
        name: ctx.common_tls_context.tls_certificate_sds_secret_configs[0].name
        for name, (_, ctx) in h.chains().items()
    }


def test_higress_https_gives_hosts_without_their_own_secret_a_certificate() -> None:
    h = Harness()
    h.put(
        service("web"),
        endpoint_slice("web", ["10.0.0.1"]),
        tls_secret("a-cert", A_CERT),
        tls_secret("wild", B_CERT, namespace="higress-system"),
        # Higress serves b with higress-https's certificate because the Ingress has TLS entries.
        ingress_body(
            "web",
            [("a.example.com", [("/", "web", 80)]), ("b.example.com", [("/", "web", 80)])],
            tls=[(["a.example.com"], "a-cert")],
        ),
        ingress_body("plain", [("c.example.com", [("/", "web", 80)])]),
    )
    assert served_certificates(h) == {"a.example.com": "kubernetes://default/a-cert"}
    h.put(https_config({"credentialConfig": [{"domains": ["*.example.com"], "tlsSecret": "wild"}]}))
    assert served_certificates(h) == {
        "a.example.com": "kubernetes://default/a-cert",
        "b.example.com": "kubernetes://higress-system/wild",
    }, "c has no TLS entry at all: plain HTTP, as in Higress"
    assert h.secret("kubernetes://higress-system/wild").HasField("tls_certificate")
    h.assert_matches_full_build()
    h.delete("ConfigMap", HTTPS_KEY)
    assert served_certificates(h) == {"a.example.com": "kubernetes://default/a-cert"}
    assert h.body(SECRET, "kubernetes://higress-system/wild") is None
    h.assert_matches_full_build()


def test_fallback_for_invalid_secret_stands_in_for_a_missing_one() -> None:
    h = Harness()
    h.put(
        service("web"),
        endpoint_slice("web", ["10.0.0.1"]),
        tls_secret("wild", B_CERT, namespace="higress-system"),
        ingress_body("web", [("a.example.com", [("/", "web", 80)])], tls=[(["a.example.com"], "missing")]),
    )
    credential = {"domains": ["*.example.com"], "tlsSecret": "higress-system/wild"}
    h.put(https_config({"credentialConfig": [credential]}))
    assert served_certificates(h) == {}, "the Ingress names its own Secret: no fallback unless asked"
    h.put(https_config({"fallbackForInvalidSecret": True, "credentialConfig": [credential]}))
    assert served_certificates(h) == {"a.example.com": "kubernetes://higress-system/wild"}
    h.assert_matches_full_build()
    # The Ingress's own Secret arrives: it takes over.
    h.put(tls_secret("missing", A_CERT))
    assert served_certificates(h) == {"a.example.com": "kubernetes://default/missing"}
    h.assert_matches_full_build()


def test_gateway_api_listeners_on_their_own_ports_carry_the_options() -> None:
    h = GatewayHarness()
    h.put(gateway_class(), gateway("gw", [listener("web", 8080)]), gw_service("web"))
    h.put(http_route())

    def own_port_manager() -> hcm.HttpConnectionManager:
        listener_msg = h.get(LISTENER, "0.0.0.0_8080", listener_pb2.Listener)
        out = hcm.HttpConnectionManager()
        assert listener_msg.filter_chains[0].filters[0].typed_config.Unpack(out)
        return out

    assert "envoy.filters.http.compressor" in [f.name for f in own_port_manager().http_filters]
    h.put(higress_config({"gzip": {"enable": False}, "downstream": {"maxRequestHeadersKb": 16}}))
    mgr = own_port_manager()
    assert "envoy.filters.http.compressor" not in [f.name for f in mgr.http_filters]
    assert mgr.max_request_headers_kb.value == 16
    h.assert_matches_full_build()
