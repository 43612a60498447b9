"""Ingress features that span objects, through the translator: canaries merged into the normal routes of
their host, orphan canaries, derived (policy and fallback) clusters shared by hosts and rebuilt with their
Service, and deletions leaving nothing behind. Every scenario ends equal to a full build of its state."""

from __future__ import annotations

import dataclasses
from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2

from tests.support.objects import endpoint_slice
from tests.translate.translator_harness import (
    CA,
    HTTP_LISTENER,
    HTTP_ROUTES,
    HTTPS_LISTENER,
    Harness,
    N,
    ingress_body,
    tls_secret,
)
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus.model.routes import (
    Destination,
    LbAlgorithm,
    UpstreamPolicy,
    UpstreamProtocol,
    UpstreamTls,
)
from xdsbus.model.services import k8s_hostname
from xdsbus.translate.envoy_destinations import destination_cluster

HOST = "a.example.com"
WEB_HOST = k8s_hostname("web", "default")
V2_HOST = k8s_hostname("v2", "default")
WEB = f"outbound|80||{WEB_HOST}"
V2 = f"outbound|80||{V2_HOST}"
OLD = "2025-01-01T00:00:00Z"


def _service(name: str, port: int = 80, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"ports": [{"name": f"http-{port}", "port": port, "targetPort": 8080}], **spec},
    }


def _ingress(
    name: str,
    backend: str = "web",
    *,
    host: str = HOST,
    path: str = "/api",
    annotations: dict[str, str] | None = None,
    created: str = "2026-01-01T00:00:00Z",
) -> dict[str, Any]:
    return ingress_body(name, [(host, [(path, backend, 80)])], annotations=annotations, created=created)


def _canary(name: str = "canary", **annotations: str) -> dict[str, Any]:
    return _ingress(
        name,
        "v2",
        annotations={N + "canary": "true", **{N + k.replace("_", "-"): v for k, v in annotations.items()}},
    )


def _policy_cluster(policy: UpstreamPolicy, host: str = WEB_HOST) -> str:
    return destination_cluster(Destination(hostname=host, port=80, policy=policy))


def _cluster(h: Harness, name: str) -> cluster_pb2.Cluster:
    return h.get(CLUSTER, name, cluster_pb2.Cluster)


# -- canaries ----------------------------------------------------------------------------------------


def test_weighted_canary_is_merged_into_the_normal_route() -> None:
    h = Harness()
    h.put(_service("web"), _service("v2"), _ingress("normal", created=OLD), _canary(canary_weight="30"))
    routes = h.vhost(HOST).routes
    assert len(routes) == 1, "the canary is merged, never served as a route of its own"
    weighted = routes[0].route.weighted_clusters.clusters
    canary_cluster = destination_cluster(
        Destination(hostname=V2_HOST, port=80, fallback=Destination(hostname=WEB_HOST, port=80))
    )
    assert [(c.name, c.weight.value) for c in weighted] == [(WEB, 70), (canary_cluster, 30)]
    # The canary falls back to the normal backend: an aggregate cluster over both.
    aggregate = _cluster(h, canary_cluster)
    config = aggregate_pb2.ClusterConfig()
    assert aggregate.cluster_type.typed_config.Unpack(config)
    assert list(config.clusters) == [V2, WEB]
    assert h.warnings("default/canary") == [] and h.warnings("default/normal") == []
    h.assert_matches_full_build()

    h.put(_canary(canary_weight="100"))
    weighted = h.vhost(HOST).routes[0].route.weighted_clusters.clusters
    assert [c.weight.value for c in weighted] == [0, 100]
    h.assert_matches_full_build()

    h.delete("Ingress", "default/canary")
    assert h.vhost(HOST).routes[0].route.cluster == WEB
    assert canary_cluster not in h.names(CLUSTER)
    h.assert_matches_full_build()


def test_header_canary_inserts_a_route_before_the_normal_one() -> None:
    h = Harness()
    h.put(
        _service("web"), _service("v2"), _ingress("normal", created=OLD), _canary(canary_by_header="x-canary")
    )
    routes = h.vhost(HOST).routes
    assert len(routes) == 2
    assert [(m.name, m.string_match.exact) for m in routes[0].match.headers] == [("x-canary", "always")]
    assert routes[0].route.cluster.startswith("outbound|80|fb-")
    assert not routes[1].match.headers and routes[1].route.cluster == WEB
    h.assert_matches_full_build()


def test_orphan_canary_is_reported_until_the_normal_ingress_appears() -> None:
    h = Harness()
    h.put(_service("web"), _service("v2"), _canary(canary_weight="30"))
    assert h.warnings("default/canary") == [
        f"host {HOST}: canary has no matching non-canary route for prefix /api"
    ]
    assert list(h.vhost(HOST).routes) == [], "an orphan canary serves nothing"
    h.assert_matches_full_build()

    h.put(_ingress("normal", created=OLD))
    assert h.warnings("default/canary") == []
    assert len(h.vhost(HOST).routes[0].route.weighted_clusters.clusters) == 2
    h.assert_matches_full_build()

    # A normal route of another path does not adopt it.
    h.put(_ingress("normal", path="/other", created=OLD))
    assert h.warnings("default/canary") == [
        f"host {HOST}: canary has no matching non-canary route for prefix /api"
    ]
    h.assert_matches_full_build()


def test_canary_over_https_follows_the_host_certificate() -> None:
    h = Harness()
    normal = ingress_body("normal", [(HOST, [("/api", "web", 80)])], tls=[([HOST], "cert")], created=OLD)
    h.put(_service("web"), _service("v2"), normal, tls_secret("cert"), _canary(canary_weight="30"))
    for config in (HTTP_ROUTES, f"https.443.{HOST}"):
        weighted = h.vhost(HOST, config).routes[0].route.weighted_clusters.clusters
        assert [c.weight.value for c in weighted] == [70, 30], config
    h.assert_matches_full_build()


# -- derived clusters --------------------------------------------------------------------------------

RANDOM = UpstreamPolicy(lb=LbAlgorithm.RANDOM)


def test_load_balance_makes_a_policy_cluster_that_leaves_with_the_ingress() -> None:
    h = Harness()
    h.put(_service("web"), _ingress("lb", annotations={N + "load-balance": "random"}))
    name = _policy_cluster(RANDOM)
    cluster = _cluster(h, name)
    assert cluster.lb_policy == cluster_pb2.Cluster.RANDOM
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.service_name == WEB, "shares the service cluster's endpoints"
    assert h.vhost(HOST).routes[0].route.cluster == name
    assert h.names(ENDPOINT) == {WEB}
    h.assert_matches_full_build()

    h.delete("Ingress", "default/lb")
    assert h.names(CLUSTER) == {WEB}
    h.assert_matches_full_build()


def test_upstream_hash_by_and_backend_protocol_make_policy_clusters() -> None:
    h = Harness()
    h.put(
        _service("web"),
        _ingress("hash", annotations={N + "upstream-hash-by": "$request_uri"}),
        _ingress("tls", host="b.example.com", annotations={N + "backend-protocol": "HTTPS"}),
        _ingress("h2", host="c.example.com", annotations={N + "backend-protocol": "GRPC"}),
    )
    hashed = _cluster(h, _policy_cluster(UpstreamPolicy(lb=LbAlgorithm.RING_HASH)))
    assert hashed.lb_policy == cluster_pb2.Cluster.RING_HASH
    route = h.vhost(HOST).routes[0].route
    assert [p.header.header_name for p in route.hash_policy] == [":path"], "$request_uri"

    upstream_tls = _cluster(h, _policy_cluster(UpstreamPolicy(tls=UpstreamTls())))
    assert upstream_tls.transport_socket.name == "envoy.transport_sockets.tls"
    h2 = _cluster(h, _policy_cluster(UpstreamPolicy(protocol=UpstreamProtocol.HTTP2)))
    assert "envoy.extensions.upstreams.http.v3.HttpProtocolOptions" in h2.typed_extension_protocol_options
    assert len(h.names(CLUSTER)) == 4
    h.assert_matches_full_build()


def test_two_hosts_share_a_policy_cluster_until_both_are_gone() -> None:
    h = Harness()
    lb = {N + "load-balance": "random"}
    h.put(
        _service("web"),
        _ingress("one", annotations=lb),
        _ingress("two", host="b.example.com", annotations=lb),
    )
    name = _policy_cluster(RANDOM)
    assert h.names(CLUSTER) == {WEB, name}
    h.delete("Ingress", "default/one")
    assert name in h.names(CLUSTER)
    h.assert_matches_full_build()
    # An edit dropping the annotation counts as no longer using it.
    h.put(_ingress("two", host="b.example.com"))
    assert h.names(CLUSTER) == {WEB}
    h.assert_matches_full_build()


def test_two_ingresses_of_one_host_share_a_policy_cluster() -> None:
    h = Harness()
    lb = {N + "load-balance": "random"}
    h.put(_service("web"), _ingress("one", annotations=lb), _ingress("two", path="/other", annotations=lb))
    name = _policy_cluster(RANDOM)
    h.delete("Ingress", "default/one")
    assert name in h.names(CLUSTER)
    h.delete("Ingress", "default/two")
    assert h.names(CLUSTER) == {WEB}
    h.assert_matches_full_build()


def test_a_service_change_rebuilds_its_policy_cluster() -> None:
    h = Harness()
    h.put(_service("web"), _ingress("lb", annotations={N + "load-balance": "random"}))
    name = _policy_cluster(RANDOM)
    assert _cluster(h, name).type == cluster_pb2.Cluster.EDS

    h.put(_service("web", type="ExternalName", externalName="web.example.net"))
    cluster = _cluster(h, name)
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.lb_policy == cluster_pb2.Cluster.RANDOM
    socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert socket.address == "web.example.net"
    assert cluster.load_assignment.cluster_name == name
    h.assert_matches_full_build()

    # Without its Service the policy cluster cannot be built (the route answers 503, as for any
    # missing service); it comes back with the Service.
    h.delete("Service", "default/web")
    assert h.names(CLUSTER) == set()
    h.put(_service("web"))
    assert h.names(CLUSTER) == {WEB, name}
    h.assert_matches_full_build()


def test_default_backend_annotation_makes_a_fallback_cluster() -> None:
    h = Harness()
    h.put(_service("web"), _service("v2"), _ingress("fb", annotations={N + "default-backend": "v2"}))
    name = destination_cluster(
        Destination(hostname=WEB_HOST, port=80, fallback=Destination(hostname=V2_HOST, port=80))
    )
    assert h.vhost(HOST).routes[0].route.cluster == name
    config = aggregate_pb2.ClusterConfig()
    assert _cluster(h, name).cluster_type.typed_config.Unpack(config)
    assert list(config.clusters) == [WEB, V2]
    h.delete("Ingress", "default/fb")
    assert h.names(CLUSTER) == {WEB, V2}
    h.assert_matches_full_build()


# -- nothing leaks -----------------------------------------------------------------------------------


def _everything() -> list[dict[str, Any]]:
    tls = ingress_body(
        "tls",
        [(HOST, [("/", "web", 80)]), ("b.example.com", [("/", "web", 80)])],
        tls=[([HOST], "cert"), (["b.example.com"], "missing")],
        annotations={N + "ssl-redirect": "true", N + "load-balance": "random", N + "auth-tls-secret": "cert"},
        default_backend=("v2", 80),
        created=OLD,
    )
    return [
        tls,
        tls_secret("cert", ca=CA.cert_pem),
        tls_secret("broken", ca=b"-----BEGIN CERTIFICATE-----\nxxxx\n"),  # rejected
        tls_secret("cert2"),
        ingress_body("other", [(HOST, [("/", "v2", 80)])], tls=[([HOST], "cert2")]),
        _ingress("api", annotations={N + "default-backend": "v2", N + "backend-protocol": "HTTPS"}),
        _canary(canary_weight="10"),
        _canary("orphan", canary_by_header="x"),
        _ingress("hash", host="*.example.com", annotations={N + "upstream-hash-by": "$host"}),
        ingress_body("any", [("", [("/", "v2", 80)])], default_backend=("web", 80)),
    ]


def test_deleting_every_ingress_and_secret_leaves_the_services_resources_only() -> None:
    services = [_service("web"), _service("v2"), endpoint_slice("web", ["10.0.0.1"])]
    baseline = Harness()
    baseline.put(*services)

    h = Harness()
    h.put(*services)
    for body in _everything():  # one by one, then all at once below
        h.put(body)
    assert h.names(LISTENER) == {HTTP_LISTENER, HTTPS_LISTENER}
    assert h.names(ROUTE) == {HTTP_ROUTES, f"https.443.{HOST}"}
    assert h.names(SECRET) == {"kubernetes://default/cert", "kubernetes://default/cert-cacert"}
    assert len(h.names(CLUSTER)) > 5
    h.assert_matches_full_build()
    for body in _everything():
        h.remove(body)
    assert h.all_names() == baseline.all_names()
    assert h.translator.table.digest() == baseline.translator.table.digest()

    h.put(*_everything())
    h.remove(*_everything())
    assert h.translator.table.digest() == baseline.translator.table.digest()

    # And without the Services, only the (empty) HTTP listener and route configuration remain.
    for kind, key in (
        ("Service", "default/web"),
        ("Service", "default/v2"),
        ("EndpointSlice", "default/web-1"),
    ):
        h.delete(kind, key)
    assert h.all_names() == {("Listener", HTTP_LISTENER), ("RouteConfiguration", HTTP_ROUTES)}
    assert (
        h.names(SECRET) == set() and h.names(LISTENER) == {HTTP_LISTENER} and h.names(ROUTE) == {HTTP_ROUTES}
    )
    assert h.translator.statuses == {}
    _assert_no_bookkeeping_left(h)


def _assert_no_bookkeeping_left(h: Harness) -> None:
    """The handlers' indexes are empty once every object is gone: hostnames come and go for months."""
    t = h.translator
    for index in (t._services.index, t._ingress.index):
        for f in dataclasses.fields(index):
            value = getattr(index, f.name)
            assert not value, f"{type(index).__name__}.{f.name} = {value!r}"
    for attr in ("_objects", "_by_name", "_owned", "_users", "_watchers"):
        assert not getattr(t._secrets.index, attr), f"SecretIndex.{attr}"
    for attr in ("_owned", "_users"):
        assert not getattr(t._ingress._in.derived, attr), f"SharedResources.{attr}"


# -- a route Envoy cannot represent ------------------------------------------------------------------


def test_a_value_beyond_envoys_types_is_reported_and_the_route_serves_without_it() -> None:
    """A retry count beyond uint32 would make the whole route table unbuildable: the parser bounds it,
    the Ingress is told, and its route serves without the annotation."""
    h = Harness()
    h.put(_service("web"), _ingress("good", path="/good"))
    h.put(_ingress("huge", path="/huge", annotations={N + "proxy-next-upstream-tries": "99999999999"}))
    routes = h.vhost(HOST).routes
    assert [r.match.path_separated_prefix for r in routes] == ["/good", "/huge"]
    assert routes[1].route.retry_policy.num_retries.value == 3
    assert h.warnings("default/huge") == [
        f'annotation {N}proxy-next-upstream-tries: "99999999999" is out of range 0-100'
    ]
    assert h.warnings("default/good") == []
    h.assert_matches_full_build()
