"""A route model using every feature, the Envoy resources the generators make of it, and a static bootstrap
holding them all (RDS and SDS inlined) so a real Envoy can check or serve them without a control plane."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import json_format

from xdsbus.model.routes import (
    CorsPolicy,
    Destination,
    DownstreamTls,
    ErrorPages,
    HashKind,
    HashPolicy,
    HeaderMatch,
    HeaderMutation,
    HttpsListenerModel,
    LbAlgorithm,
    ListenerModel,
    Mirror,
    PathKind,
    PathMatch,
    QueryMatch,
    Redirect,
    RetryPolicy,
    Rewrite,
    Route,
    RouteOrigin,
    StringMatchKind,
    TlsFilterChainModel,
    TlsVersion,
    UpstreamPolicy,
    UpstreamProtocol,
    UpstreamTls,
    UpstreamTlsMode,
    VirtualHostModel,
)
from xdsbus.model.secrets import SecretModel, TlsCertificate
from xdsbus.model.services import Resolution, ServiceModel, ServicePort
from xdsbus.translate import envoy_clusters, envoy_destinations, envoy_listeners, envoy_routes, envoy_secrets

ORIGIN = RouteOrigin(created="2024-01-01T00:00:00Z", kind="Ingress", key="default/everything")

WEB = "web.default.svc.cluster.local"
GRPC = "grpc.default.svc.cluster.local"
EXTERNAL = "external.default.svc.cluster.local"
ERRORS = "errors.default.svc.cluster.local"
BACKUP = "backup.default.svc.cluster.local"

CERT_SECRET = "kubernetes://default/tls"
OTHER_CERT_SECRET = "kubernetes://default/other-tls"
CA_SECRET = "kubernetes://default/tls-cacert"


def self_signed(common_name: str, sans: tuple[str, ...]) -> TlsCertificate:
    """A fresh self-signed certificate (usable as its own CA) and its key, PEM."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return TlsCertificate(
        cert_chain=cert.public_bytes(serialization.Encoding.PEM),
        private_key=key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def services() -> list[ServiceModel]:
    return [
        ServiceModel(hostname=WEB, ports=(ServicePort(number=80, name="http"),)),
        ServiceModel(hostname=GRPC, ports=(ServicePort(number=9090, name="grpc", protocol="GRPC"),)),
        ServiceModel(
            hostname=EXTERNAL,
            ports=(ServicePort(number=443, name="https", target=443),),
            resolution=Resolution.STRICT_DNS,
            dns_name="example.com",
        ),
        ServiceModel(hostname=ERRORS, ports=(ServicePort(number=80),)),
        ServiceModel(hostname=BACKUP, ports=(ServicePort(number=80),)),
    ]


UPSTREAM_MTLS = UpstreamPolicy(
    lb=LbAlgorithm.RING_HASH,
    protocol=UpstreamProtocol.HTTP2,
    tls=UpstreamTls(
        mode=UpstreamTlsMode.MUTUAL,
        client_secret=CERT_SECRET,
        ca_secret=CA_SECRET,
        sni="example.com",
        verify=True,
        subject_alt_names=("example.com", "www.example.com"),
    ),
)


def everything_routes() -> tuple[Route, ...]:
    """One route per feature group, together using every field of the route model."""
    both_ways = HeaderMutation(add=(("x-add", "a"),), set=(("x-set", "50%"),), remove=("x-remove",))
    return (
        Route(
            path=PathMatch(kind=PathKind.EXACT, value="/exact"),
            headers=(
                HeaderMatch(name="x-exact", value="v"),
                HeaderMatch(name="x-prefix", kind=StringMatchKind.PREFIX, value="p"),
                HeaderMatch(name="x-suffix", kind=StringMatchKind.SUFFIX, value="s"),
                HeaderMatch(name="x-contains", kind=StringMatchKind.CONTAINS, value="c"),
                HeaderMatch(name="x-regex", kind=StringMatchKind.REGEX, value="[a-z]+"),
                HeaderMatch(name="x-present", kind=StringMatchKind.PRESENT),
                HeaderMatch(name="x-absent", kind=StringMatchKind.PRESENT, invert=True),
                HeaderMatch(name="x-empty-prefix", kind=StringMatchKind.PREFIX),
            ),
            query=(
                QueryMatch(name="q", value="1"),
                QueryMatch(name="r", kind=StringMatchKind.REGEX, value="\\d+"),
                QueryMatch(name="s", kind=StringMatchKind.PRESENT),
            ),
            methods=("GET",),
            destinations=(Destination(hostname=WEB, port=80),),
            origin=ORIGIN,
            name="everything/matches",
        ),
        Route(
            path=PathMatch(kind=PathKind.PREFIX, value="/Weighted"),
            methods=("GET", "POST"),
            ignore_case=True,
            destinations=(
                Destination(
                    hostname=WEB,
                    port=80,
                    weight=90,
                    request_headers=both_ways,
                    response_headers=both_ways,
                ),
                Destination(hostname=BACKUP, port=80, weight=10),
                Destination(hostname=ERRORS, port=80, weight=0),
            ),
            request_headers=HeaderMutation(
                set=(("host", "rewritten.example.com"),), remove=(":path", "x-drop")
            ),
            response_headers=both_ways,
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.REGEX, value="/re/(\\w+)/x"),
            ignore_case=True,
            destinations=(
                Destination(
                    hostname=EXTERNAL,
                    port=443,
                    policy=UPSTREAM_MTLS,
                    fallback=Destination(
                        hostname=WEB,
                        port=80,
                        policy=UpstreamPolicy(lb=LbAlgorithm.MAGLEV),
                        fallback=Destination(hostname=BACKUP, port=80),
                    ),
                ),
            ),
            rewrite=Rewrite(regex="^/re/(\\w+)/x$", substitution="/\\1", host="backend.example.com"),
            timeout_ms=2500,
            retry=RetryPolicy(
                attempts=3,
                retry_on=("5xx", "reset"),
                retriable_status_codes=(409,),
                per_try_timeout_ms=500,
            ),
            hash_policies=(
                HashPolicy(kind=HashKind.HEADER, name="x-user"),
                HashPolicy(kind=HashKind.COOKIE, name="session", cookie_path="/", generate_cookie=True),
                HashPolicy(kind=HashKind.COOKIE, name="sticky", cookie_ttl_seconds=3600),
                HashPolicy(kind=HashKind.SOURCE_IP),
                HashPolicy(kind=HashKind.QUERY, name="user"),
            ),
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.PREFIX, value="/grpc/"),
            destinations=(
                Destination(
                    hostname=GRPC,
                    port=9090,
                    policy=UpstreamPolicy(
                        lb=LbAlgorithm.LEAST_REQUEST,
                        tls=UpstreamTls(sni="grpc.example.com", verify=True),
                    ),
                ),
            ),
            rewrite=Rewrite(prefix="/"),
            mirrors=(
                Mirror(destination=Destination(hostname=BACKUP, port=80)),
                Mirror(
                    destination=Destination(
                        hostname=WEB, port=80, policy=UpstreamPolicy(lb=LbAlgorithm.RANDOM)
                    ),
                    millionths=250_000,
                ),
            ),
            cors=CorsPolicy(
                allow_origins=(
                    (StringMatchKind.EXACT, "https://a.example.com"),
                    (StringMatchKind.SUFFIX, ".example.org"),
                    (StringMatchKind.REGEX, "https://.*\\.example\\.net"),
                    (StringMatchKind.PRESENT, ""),
                ),
                allow_methods=("GET", "POST"),
                allow_headers=("x-a", "x-b"),
                expose_headers=("x-c",),
                allow_credentials=True,
                max_age_seconds=600,
            ),
            allow_source_ranges=("10.0.0.0/8", "192.168.1.7", "2001:db8::/32"),
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.PREFIX, value="/pages"),
            destinations=(Destination(hostname=WEB, port=80),),
            rewrite=Rewrite(path="/index.html"),
            error_pages=ErrorPages(codes=(404, 503, 500), destination=Destination(hostname=ERRORS, port=80)),
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.PREFIX, value="/old/"),
            redirect=Redirect(scheme="https", host="new.example.com", port=8443, prefix="/new/", code=308),
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.EXACT, value="/moved"),
            redirect=Redirect(scheme="http", path="/there", code=301, strip_query=True),
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.EXACT, value="/teapot"),
            direct_status=418,
            direct_body="short and stout",
            origin=ORIGIN,
        ),
        Route(
            path=PathMatch(kind=PathKind.PREFIX, value="/"),
            destinations=(Destination(hostname=WEB, port=80, weight=0),),
            origin=ORIGIN,
        ),
    )


@dataclass
class EnvoyConfig:
    """Every resource, by name, as the control plane would publish them."""

    clusters: dict[str, cluster_pb2.Cluster] = field(default_factory=dict)
    endpoints: dict[str, endpoint_pb2.ClusterLoadAssignment] = field(default_factory=dict)
    listeners: dict[str, listener_pb2.Listener] = field(default_factory=dict)
    routes: dict[str, route_pb2.RouteConfiguration] = field(default_factory=dict)
    secrets: dict[str, secret_pb2.Secret] = field(default_factory=dict)

    def add_services(self, models: list[ServiceModel]) -> None:
        for svc in models:
            for port in svc.ports:
                cluster = envoy_clusters.build_cluster(svc, port)
                self.clusters[cluster.name] = cluster

    def add_derived(self, routes: tuple[Route, ...], lookup: Callable[[str], ServiceModel | None]) -> None:
        for route in routes:
            for dest in envoy_destinations.route_destinations(route):
                for name, cluster in envoy_destinations.derived_clusters(dest, lookup):
                    self.clusters[name] = cluster

    def add_route_config(self, name: str, vhosts: list[VirtualHostModel]) -> None:
        body = envoy_routes.assemble_route_config(
            name, [envoy_routes.build_virtual_host(vh).SerializeToString(deterministic=True) for vh in vhosts]
        )
        self.routes[name] = route_pb2.RouteConfiguration.FromString(body)


def everything(http_port: int, https_port: int) -> EnvoyConfig:
    """Every feature of the route model, an HTTP listener and an HTTPS listener with two SNI chains (one
    asking for client certificates), and the secrets they use."""
    by_host = {svc.hostname: svc for svc in services()}
    routes = everything_routes()
    config = EnvoyConfig()
    config.add_services(list(by_host.values()))
    config.add_derived(routes, by_host.get)

    http_routes = envoy_listeners.http_route_config_name(http_port)
    http = ListenerModel(
        name=envoy_listeners.listener_name(http_port), port=http_port, route_config=http_routes
    )
    config.listeners[http.name] = envoy_listeners.build_http_listener(http)
    config.add_route_config(
        http_routes,
        [
            VirtualHostModel(
                name=f"everything.example.com:{http_port}", domains=("everything.example.com",), routes=routes
            ),
            VirtualHostModel(name=f"*:{http_port}", domains=("*",), routes=routes[-1:]),
        ],
    )

    one = envoy_listeners.https_route_config_name(https_port, "one")
    two = envoy_listeners.https_route_config_name(https_port, "two")
    https = HttpsListenerModel(
        name=envoy_listeners.listener_name(https_port),
        port=https_port,
        chains=(
            TlsFilterChainModel(
                server_names=("*.wild.example.com", "secure.example.com"),
                tls=DownstreamTls(
                    cert_secret=CERT_SECRET,
                    client_ca_secret=CA_SECRET,
                    min_version=TlsVersion.TLS1_2,
                    max_version=TlsVersion.TLS1_3,
                    cipher_suites=("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
                ),
                route_config=two,
            ),
            TlsFilterChainModel(
                server_names=("everything.example.com",),
                tls=DownstreamTls(cert_secret=OTHER_CERT_SECRET, alpn=("http/1.1",)),
                route_config=one,
            ),
        ),
    )
    config.listeners[https.name] = envoy_listeners.build_https_listener(https)
    config.add_route_config(
        one,
        [
            VirtualHostModel(
                name=f"everything.example.com:{https_port}",
                domains=("everything.example.com",),
                routes=routes,
            )
        ],
    )
    config.add_route_config(
        two,
        [
            VirtualHostModel(
                name=f"secure.example.com:{https_port}",
                domains=("secure.example.com", "*.wild.example.com"),
                routes=routes[:2],
            )
        ],
    )

    cert = self_signed("example.com", ("example.com", "everything.example.com", "secure.example.com"))
    for model in (
        SecretModel(name=CERT_SECRET, certificate=cert),
        SecretModel(name=OTHER_CERT_SECRET, certificate=self_signed("other", ("everything.example.com",))),
        SecretModel(name=CA_SECRET, trusted_ca=cert.cert_chain),
    ):
        config.secrets[model.name] = envoy_secrets.build_secret(model)
    return config


def _to_dict(message: Any) -> dict[str, Any]:
    return json_format.MessageToDict(message, preserving_proto_field_name=True)  # type: ignore[no-any-return]


def _inline(node: Any, routes: dict[str, dict[str, Any]]) -> Any:
    """`node` with RDS references replaced by the route configurations and SDS references pointing at
    static secrets (an SdsSecretConfig without a config source names a static secret)."""
    if isinstance(node, list):
        return [_inline(item, routes) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key == "rds":
            out["route_config"] = routes[value["route_config_name"]]
        elif key == "sds_config":
            continue
        else:
            out[key] = _inline(value, routes)
    return out


def _static_cluster(cluster: dict[str, Any], endpoints: dict[str, list[tuple[str, int]]]) -> dict[str, Any]:
    """An EDS cluster turned STATIC, with the endpoints of its EDS service name."""
    if cluster.get("type") != "EDS":
        return cluster
    service = cluster.pop("eds_cluster_config").get("service_name", cluster["name"])
    addresses = endpoints.get(service, [])
    lb_endpoints = [
        {"endpoint": {"address": {"socket_address": {"address": a, "port_value": p}}}} for a, p in addresses
    ]
    return {
        **cluster,
        "type": "STATIC",
        "load_assignment": {"cluster_name": service, "endpoints": [{"lb_endpoints": lb_endpoints}]},
    }


def static_bootstrap(
    config: EnvoyConfig, admin_port: int, endpoints: dict[str, list[tuple[str, int]]] | None = None
) -> dict[str, Any]:
    """A bootstrap serving `config` from static resources.

    Without `endpoints`, EDS clusters stay as they are and read their endpoints over ADS from a server that
    is never there (enough to validate); with it, they become STATIC clusters with the endpoints of their
    EDS service name (enough to serve traffic).
    """
    routes = {name: _to_dict(rc) for name, rc in config.routes.items()}
    clusters = [_inline(_to_dict(c), routes) for _, c in sorted(config.clusters.items())]
    bootstrap: dict[str, Any] = {
        "node": {"id": "static", "cluster": "higress-gateway"},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
    }
    if endpoints is not None:
        clusters = [_static_cluster(c, endpoints) for c in clusters]
    else:
        clusters.append(
            {
                "name": "xds",
                "type": "STATIC",
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}},
                    }
                },
                "load_assignment": {"cluster_name": "xds"},
            }
        )
        bootstrap["dynamic_resources"] = {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "grpc_services": [{"envoy_grpc": {"cluster_name": "xds"}}],
            }
        }
    bootstrap["static_resources"] = {
        "listeners": [_inline(_to_dict(lst), routes) for _, lst in sorted(config.listeners.items())],
        "clusters": clusters,
        "secrets": [_to_dict(s) for _, s in sorted(config.secrets.items())],
    }
    return bootstrap


def write_json(path: Path, document: dict[str, Any]) -> Path:
    path.write_text(json.dumps(document, indent=1, sort_keys=True))
    return path
