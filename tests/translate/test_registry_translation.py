"""Registry services into Envoy resources: RegistryService events (Nacos, Consul, Eureka watchers), the
`dns` and `static` registries of McpBridge, and Ingresses routing to them with higress.io/destination."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from tests.support.envoy_config import EnvoyConfig, static_bootstrap, write_json
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.translate.global_options.envoy_upstream import speaks_http2
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.processes import tool

NACOS = "nacos/prod"
NACOS_HOST = "svc.DEFAULT-GROUP.public.nacos"
NACOS_CLUSTER = f"outbound|8080||{NACOS_HOST}"
BRIDGE_KEY = "higress-system/default"


def registry_service(
    hostname: str = NACOS_HOST,
    port: int = 8080,
    endpoints: list[dict[str, Any]] | None = None,
    protocol: str = "HTTP",
) -> dict[str, Any]:
    """A RegistryService event body, as watch-nacos publishes it."""
    return {
        "hostname": hostname,
        "registry_type": "nacos",
        "registry": "prod",
        "service": hostname.split(".", 1)[0],
        "port": port,
        "protocol": protocol,
        "endpoints": endpoints if endpoints is not None else [{"address": "10.0.0.1", "port": 8080}],
    }


def mcpbridge(*registries: dict[str, Any], name: str = "default") -> dict[str, Any]:
    return {
        "apiVersion": "networking.higress.io/v1",
        "kind": "McpBridge",
        "metadata": {"name": name, "namespace": "higress-system"},
        "spec": {"registries": list(registries)},
    }


def destination_ingress(destination: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An Ingress whose backend is the McpBridge, with higress.io/destination naming a registry host."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": "reg",
            "namespace": "default",
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {"higress.io/destination": destination, **(annotations or {})},
        },
        "spec": {
            "rules": [
                {
                    "host": "reg.example.com",
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "resource": {
                                        "apiGroup": "networking.higress.io",
                                        "kind": "McpBridge",
                                        "name": "default",
                                    }
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }


class Harness:
    """Folds events one at a time, as the builder does, and reads the resources back."""

    def __init__(self) -> None:
        self.state = FoldState()
        self.translator = Translator()
        self.seq = 0

    def upsert(self, source: str, kind: str, key: str, body: Any) -> None:
        self.fold(Event(source=source, kind=kind, key=key, op=Op.UPSERT, rev=f"r{self.seq}", body=body))

    def delete(self, source: str, kind: str, key: str) -> None:
        self.fold(Event(source=source, kind=kind, key=key, op=Op.DELETE))

    def fold(self, event: Event) -> None:
        self.seq += 1
        self.translator.update(self.state, apply(self.state, self.seq, event))

    def service(self, body: dict[str, Any], source: str = NACOS) -> None:
        self.upsert(source, "RegistryService", body["hostname"], body)

    def bridge(self, body: dict[str, Any], source: str = "k8s/prod") -> None:
        meta = body["metadata"]
        self.upsert(source, "McpBridge", f"{meta['namespace']}/{meta['name']}", body)

    def find(self, type_url: str, name: str) -> bytes | None:
        res = self.translator.table.get(type_url, name)
        return None if res is None else res.body

    def get(self, type_url: str, name: str, cls: type[Message]) -> Any:
        body = self.find(type_url, name)
        assert body is not None, f"{type_url} {name} missing"
        wrapper = any_pb2.Any()
        wrapper.ParseFromString(body)
        msg = cls()
        wrapper.Unpack(msg)
        return msg

    def cluster(self, name: str) -> cluster_pb2.Cluster:
        cluster: cluster_pb2.Cluster = self.get(CLUSTER, name, cluster_pb2.Cluster)
        return cluster

    def status(self, kind: str, source: str, key: str) -> ObjectStatus:
        return self.translator.statuses[ObjectRef(kind, source, key)]


def lb_endpoints(assignment: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[str, str, int, int]]:
    """(zone, address, port, weight) of every endpoint, in order."""
    return [
        (
            group.locality.zone,
            lb.endpoint.address.socket_address.address,
            lb.endpoint.address.socket_address.port_value,
            lb.load_balancing_weight.value or 1,
        )
        for group in assignment.endpoints
        for lb in group.lb_endpoints
    ]


def tls_context(cluster: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(context)
    return context


# -- RegistryService events -----------------------------------------------------------------------------


def test_registry_service_is_an_eds_cluster_with_weighted_zoned_healthy_endpoints() -> None:
    h = Harness()
    h.service(
        registry_service(
            endpoints=[
                {"address": "10.0.0.2", "port": 8080, "weight": 3, "zone": "b"},
                {"address": "10.0.0.1", "port": 8081, "zone": "a"},
                {"address": "10.0.0.9", "port": 8080, "healthy": False},
                {"address": "10.0.0.3", "port": 8080, "weight": 0},
            ]
        )
    )
    cluster = h.cluster(NACOS_CLUSTER)
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert not speaks_http2(cluster)
    assert not cluster.HasField("transport_socket")
    cla = h.get(ENDPOINT, NACOS_CLUSTER, endpoint_pb2.ClusterLoadAssignment)
    # Unhealthy instances are left out, weights carried (at least 1), zones become localities.
    assert lb_endpoints(cla) == [
        ("", "10.0.0.3", 8080, 1),
        ("a", "10.0.0.1", 8081, 1),
        ("b", "10.0.0.2", 8080, 3),
    ]
    assert h.status("RegistryService", NACOS, NACOS_HOST).state is Verdict.ACCEPTED


def test_grpc_speaks_http2_and_https_grpcs_originate_tls() -> None:
    h = Harness()
    h.service(registry_service("g.G.public.nacos", protocol="GRPC"))
    h.service(registry_service("s.G.public.nacos", protocol="HTTPS"))
    h.service(registry_service("gs.G.public.nacos", protocol="grpcs"))
    grpc = h.cluster("outbound|8080||g.G.public.nacos")
    assert speaks_http2(grpc)
    assert not grpc.HasField("transport_socket")
    https = h.cluster("outbound|8080||s.G.public.nacos")
    assert not speaks_http2(https)
    assert list(tls_context(https).common_tls_context.alpn_protocols) == []
    grpcs = h.cluster("outbound|8080||gs.G.public.nacos")
    assert speaks_http2(grpcs)
    assert list(tls_context(grpcs).common_tls_context.alpn_protocols) == ["h2"]


def test_instances_registered_by_host_name_make_a_strict_dns_cluster() -> None:
    h = Harness()
    h.service(
        registry_service(
            endpoints=[
                {"address": "Backend.Example.com", "port": 8080},
                {"address": "10.0.0.1", "port": 8080},
            ]
        )
    )
    cluster = h.cluster(NACOS_CLUSTER)
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert [a for _, a, _, _ in lb_endpoints(cluster.load_assignment)] == [
        "10.0.0.1",
        "backend.example.com",
    ]
    assert h.find(ENDPOINT, NACOS_CLUSTER) is None, "a DNS cluster carries its endpoints itself"


def test_bad_instances_are_left_out_with_warnings_and_a_bad_service_is_rejected_alone() -> None:
    h = Harness()
    h.service(
        registry_service(
            endpoints=[
                {"address": "10.0.0.1", "port": 8080},
                {"address": "not an address", "port": 8080},
                {"address": "10.0.0.2", "port": 70000},
            ],
            protocol="dubbo",
        )
    )
    cla = h.get(ENDPOINT, NACOS_CLUSTER, endpoint_pb2.ClusterLoadAssignment)
    assert [a for _, a, _, _ in lb_endpoints(cla)] == ["10.0.0.1"]
    warnings = h.status("RegistryService", NACOS, NACOS_HOST).warnings
    assert any("not an address" in w and "neither an IP address nor a host name" in w for w in warnings)
    assert any("10.0.0.2:70000" in w for w in warnings)
    assert any("'dubbo' is not supported" in w for w in warnings)

    mismatched = registry_service("other.G.public.nacos")
    h.upsert(NACOS, "RegistryService", "elsewhere.G.public.nacos", mismatched)
    status = h.status("RegistryService", NACOS, "elsewhere.G.public.nacos")
    assert status.state is Verdict.REJECTED and "is not the event key" in status.reason
    h.service(registry_service("bad-port.G.public.nacos", port=0))
    assert h.status("RegistryService", NACOS, "bad-port.G.public.nacos").state is Verdict.REJECTED
    assert h.find(CLUSTER, NACOS_CLUSTER) is not None


def test_deleted_or_resynced_away_registry_services_lose_their_clusters() -> None:
    h = Harness()
    h.service(registry_service())
    h.service(registry_service("b.G.public.nacos"))
    h.delete(NACOS, "RegistryService", NACOS_HOST)
    assert h.find(CLUSTER, NACOS_CLUSTER) is None and h.find(ENDPOINT, NACOS_CLUSTER) is None
    # A resync that no longer lists a hostname (a registry removed from McpBridge: an empty resync).
    h.fold(Event(source=NACOS, kind="RegistryService", op=Op.SYNC_BEGIN, epoch=5))
    h.fold(Event(source=NACOS, kind="RegistryService", op=Op.SYNC_END, epoch=5, body={"keys": []}))
    assert h.find(CLUSTER, "outbound|8080||b.G.public.nacos") is None
    assert not [ref for ref in h.translator.statuses if ref.kind == "RegistryService"]


# -- McpBridge dns and static registries ----------------------------------------------------------------


def test_dns_registry_is_one_strict_dns_cluster_over_its_domains() -> None:
    h = Harness()
    h.bridge(
        mcpbridge(
            {"type": "dns", "name": "multi_dns", "domain": "a.example.com, b.example.com", "port": 80},
            {"type": "dns", "name": "secure", "domain": "api.example.com", "port": 443, "protocol": "HTTPS"},
        )
    )
    cluster = h.cluster("outbound|80||multi-dns.dns")
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert [(a, p) for _, a, p, _ in lb_endpoints(cluster.load_assignment)] == [
        ("a.example.com", 80),
        ("b.example.com", 80),
    ]
    secure = h.cluster("outbound|443||secure.dns")
    assert tls_context(secure).sni == "api.example.com", "one domain: it is the SNI (as Higress)"
    assert h.status("McpBridge", "k8s/prod", BRIDGE_KEY).state is Verdict.ACCEPTED


def test_static_registry_is_a_static_cluster_with_inline_endpoints() -> None:
    h = Harness()
    h.bridge(
        mcpbridge(
            {
                "type": "static",
                "name": "infra-backend-v1-ip",
                "domain": "10.1.1.2:8080,10.1.1.1:80,[2001:db8::1]:8443",
                "port": 80,
                "protocol": "GRPC",
            }
        )
    )
    cluster = h.cluster("outbound|80||infra-backend-v1-ip.static")
    assert cluster.type == cluster_pb2.Cluster.STATIC
    assert [(a, p) for _, a, p, _ in lb_endpoints(cluster.load_assignment)] == [
        ("10.1.1.1", 80),
        ("10.1.1.2", 8080),
        ("2001:db8::1", 8443),
    ]
    assert speaks_http2(cluster)
    assert h.find(ENDPOINT, "outbound|80||infra-backend-v1-ip.static") is None


def test_invalid_registry_entries_are_warnings_naming_the_registry_and_the_rest_applies() -> None:
    h = Harness()
    h.bridge(
        mcpbridge(
            {
                "type": "static",
                "name": "mixed",
                "domain": "10.0.0.1:80,10.0.0.x:80,10.0.0.2:99999,::1:80",
                "port": 80,
            },
            {"type": "static", "name": "none", "domain": "bad", "port": 80},
            {"type": "static", "name": "portless", "domain": "10.0.0.3:80"},
            {"type": "dns", "name": "baddns", "domain": "-bad-.example.com", "port": 80},
            {"type": "foo", "name": "x", "domain": "d", "port": 1},
            {"type": "zookeeper", "name": "zk", "domain": "zk", "port": 2181},
            {"type": "nacos2", "name": "nodomain"},
            {"type": "dns", "port": "eighty", "name": "typo"},
            {"type": "dns", "name": "good", "domain": "good.example.com", "port": 80},
        )
    )
    status = h.status("McpBridge", "k8s/prod", BRIDGE_KEY)
    assert status.state is Verdict.ACCEPTED
    text = "\n".join(status.warnings)
    for expected in (
        "registries[0] (static/mixed): domain entry '10.0.0.x:80' address '10.0.0.x' is not an IP address",
        "registries[0] (static/mixed): domain entry '10.0.0.2:99999' port '99999' is not a port number",
        "registries[0] (static/mixed): domain entry '::1:80' is not '<IPv4>:<port>' or '[<IPv6>]:<port>'",
        "registries[1] (static/none): domain 'bad' lists no usable endpoint; ignored",
        "registries[2] (static/portless): port 0 is not a port number (1-65535); ignored",
        "registries[3] (dns/baddns): domain entry '-bad-.example.com' is not a domain name",
        "registries[4] (foo/x): unknown type 'foo'",
        "registries[5] (zookeeper/zk): type 'zookeeper' is not supported by xdsbus",
        "registries[6] (nacos2/nodomain): needs a domain and a port",
        "registries[7] (typo): Expected `int`, got `str` - at `$.port`",
    ):
        assert expected in text, f"{expected!r} not in:\n{text}"
    mixed = h.cluster("outbound|80||mixed.static")
    assert [a for _, a, _, _ in lb_endpoints(mixed.load_assignment)] == ["10.0.0.1"]
    assert h.find(CLUSTER, "outbound|80||good.dns") is not None
    for gone in ("none.static", "portless.static", "baddns.dns", "typo.dns"):
        assert not [k for k, _ in h.translator.table.items() if k.name.endswith(f"||{gone}")]


def test_only_the_default_mcpbridge_counts_and_the_first_source_by_name_wins() -> None:
    h = Harness()
    h.bridge(mcpbridge({"type": "dns", "name": "other", "domain": "o.example.com", "port": 80}, name="extra"))
    assert h.find(CLUSTER, "outbound|80||other.dns") is None
    assert h.status("McpBridge", "k8s/prod", "higress-system/extra").state is Verdict.REJECTED

    h.bridge(mcpbridge({"type": "dns", "name": "from-k8s", "domain": "k.example.com", "port": 80}))
    h.bridge(
        mcpbridge({"type": "dns", "name": "from-file", "domain": "f.example.com", "port": 80}),
        source="file/examples",
    )
    assert h.find(CLUSTER, "outbound|80||from-file.dns") is not None
    assert h.find(CLUSTER, "outbound|80||from-k8s.dns") is None
    loser = h.status("McpBridge", "k8s/prod", BRIDGE_KEY)
    assert loser.state is Verdict.REJECTED and "file/examples" in loser.reason

    h.delete("file/examples", "McpBridge", BRIDGE_KEY)
    assert h.find(CLUSTER, "outbound|80||from-file.dns") is None
    assert h.find(CLUSTER, "outbound|80||from-k8s.dns") is not None
    assert h.status("McpBridge", "k8s/prod", BRIDGE_KEY).state is Verdict.ACCEPTED
    assert ObjectRef("McpBridge", "file/examples", BRIDGE_KEY) not in h.translator.statuses


def test_changing_the_mcpbridge_replaces_its_services() -> None:
    h = Harness()
    h.bridge(mcpbridge({"type": "static", "name": "s", "domain": "10.0.0.1:80", "port": 80}))
    h.bridge(mcpbridge({"type": "static", "name": "s", "domain": "10.0.0.2:80", "port": 8080}))
    assert h.find(CLUSTER, "outbound|80||s.static") is None
    cluster = h.cluster("outbound|8080||s.static")
    assert [a for _, a, _, _ in lb_endpoints(cluster.load_assignment)] == ["10.0.0.2"]
    h.delete("k8s/prod", "McpBridge", BRIDGE_KEY)
    assert not [k for k, _ in h.translator.table.items() if k.type_url == CLUSTER]


# -- routing to registry hostnames ----------------------------------------------------------------------


def route_action(h: Harness) -> route_pb2.RouteAction:
    config = h.get(ROUTE, "http.80", route_pb2.RouteConfiguration)
    (vhost,) = [vh for vh in config.virtual_hosts if vh.name == "reg.example.com:80"]
    return vhost.routes[0].route


def test_ingress_destination_routes_to_the_registry_service_once_it_exists() -> None:
    h = Harness()
    h.upsert("k8s/prod", "Ingress", "default/reg", destination_ingress(f"{NACOS_HOST}:8080"))
    # Before the registry has the service the route names a cluster that does not exist: Envoy answers
    # 503 (cluster not found) until it does.
    assert route_action(h).cluster == NACOS_CLUSTER
    assert h.find(CLUSTER, NACOS_CLUSTER) is None
    h.service(registry_service())
    assert route_action(h).cluster == NACOS_CLUSTER
    assert h.cluster(NACOS_CLUSTER).type == cluster_pb2.Cluster.EDS
    cla = h.get(ENDPOINT, NACOS_CLUSTER, endpoint_pb2.ClusterLoadAssignment)
    assert [a for _, a, _, _ in lb_endpoints(cla)] == ["10.0.0.1"]
    assert h.status("Ingress", "k8s/prod", "default/reg").warnings == []


def test_policy_clusters_of_registry_destinations_follow_the_registry_service() -> None:
    h = Harness()
    annotations = {"higress.io/load-balance": "least_conn"}
    h.upsert("k8s/prod", "Ingress", "default/reg", destination_ingress("s.static:80", annotations))
    policy_cluster = route_action(h).cluster
    assert policy_cluster.startswith("outbound|80|p-") and policy_cluster.endswith("|s.static")
    assert h.find(CLUSTER, policy_cluster) is None, "no policy cluster for an unknown service"
    h.bridge(mcpbridge({"type": "static", "name": "s", "domain": "10.0.0.1:80", "port": 80}))
    cluster = h.cluster(policy_cluster)
    assert cluster.type == cluster_pb2.Cluster.STATIC
    assert cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert cluster.load_assignment.cluster_name == policy_cluster
    h.delete("k8s/prod", "McpBridge", BRIDGE_KEY)
    assert h.find(CLUSTER, policy_cluster) is None


# -- determinism and Envoy ------------------------------------------------------------------------------


def scenario() -> list[Event]:
    """A registry and a McpBridge coming, changing and going, and an Ingress routing to both."""
    events: list[Event] = []

    def upsert(source: str, kind: str, key: str, body: Any) -> None:
        events.append(Event(source=source, kind=kind, key=key, op=Op.UPSERT, rev=str(len(events)), body=body))

    upsert("k8s/prod", "Ingress", "default/reg", destination_ingress(f"{NACOS_HOST}:8080"))
    upsert(NACOS, "RegistryService", NACOS_HOST, registry_service())
    upsert(
        "k8s/prod",
        "McpBridge",
        BRIDGE_KEY,
        mcpbridge({"type": "dns", "name": "d", "domain": "d.io", "port": 80}),
    )
    upsert(
        NACOS, "RegistryService", "b.G.public.nacos", registry_service("b.G.public.nacos", protocol="GRPC")
    )
    eps = [{"address": f"10.0.1.{i}", "port": 8080, "zone": "z" + str(i % 2)} for i in range(5)]
    upsert(NACOS, "RegistryService", NACOS_HOST, registry_service(endpoints=eps))
    events.append(Event(source=NACOS, kind="RegistryService", key="b.G.public.nacos", op=Op.DELETE))
    upsert(
        "file/x",
        "McpBridge",
        BRIDGE_KEY,
        mcpbridge({"type": "static", "name": "s", "domain": "1.2.3.4:80", "port": 80}),
    )
    return events


def test_same_events_give_the_same_digest_whatever_the_batching() -> None:
    events = scenario()
    one_by_one = Harness()
    for event in events:
        one_by_one.fold(event)

    batched = Translator()
    state = FoldState()
    changed: list[ObjectRef] = []
    for seq, event in enumerate(events, start=1):
        changed.extend(apply(state, seq, event))
    batched.update(state, changed)

    rebuilt = Translator()
    rebuilt.full_build(state)
    digest = one_by_one.translator.table.digest()
    assert batched.table.digest() == digest
    assert rebuilt.table.digest() == digest
    assert rebuilt.statuses == one_by_one.translator.statuses


def test_envoy_validates_registry_clusters(tmp_path: Path) -> None:
    h = Harness()
    h.upsert("k8s/prod", "Ingress", "default/reg", destination_ingress(f"{NACOS_HOST}:8080"))
    h.service(registry_service(protocol="GRPCS"))
    h.service(registry_service("dns.G.public.nacos", endpoints=[{"address": "a.example.com", "port": 80}]))
    h.bridge(
        mcpbridge(
            {
                "type": "dns",
                "name": "d",
                "domain": "a.example.com,b.example.com",
                "port": 443,
                "protocol": "HTTPS",
            },
            {
                "type": "static",
                "name": "s",
                "domain": "10.0.0.1:80,[::1]:81",
                "port": 80,
                "protocol": "HTTP2",
            },
        )
    )
    config = EnvoyConfig()
    for key, _ in h.translator.table.items():
        if key.type_url == CLUSTER:
            config.clusters[key.name] = h.cluster(key.name)
        elif key.type_url == LISTENER:
            config.listeners[key.name] = h.get(LISTENER, key.name, listener_pb2.Listener)
        elif key.type_url == ROUTE:
            config.routes[key.name] = h.get(ROUTE, key.name, route_pb2.RouteConfiguration)
    assert {c.type for c in config.clusters.values()} == {
        cluster_pb2.Cluster.EDS,
        cluster_pb2.Cluster.STRICT_DNS,
        cluster_pb2.Cluster.STATIC,
    }
    path = write_json(tmp_path / "bootstrap.json", static_bootstrap(config, admin_port=19902))
    result = subprocess.run(
        [
            tool("envoy"),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
