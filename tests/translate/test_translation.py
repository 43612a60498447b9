"""What the translator emits for Services, EndpointSlices and Ingress rules, read back as Envoy config."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from tests.support.objects import endpoint_slice, ingress, service
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, apply
from xdsbus.translate.ingress_annotations.re2 import re2_problem
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator

SOURCE = "test/unit"


class Harness:
    """Folds objects one by one, as the builder does, and reads resources back."""

    def __init__(self, http_port: int = 80) -> None:
        self.state = FoldState()
        self.translator = Translator(TranslatorSettings(http_port=http_port))
        self.seq = 0

    def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        key = f"{meta.get('namespace', 'default')}/{meta['name']}"
        self._fold(Event(source=SOURCE, kind=obj["kind"], key=key, op=Op.UPSERT, rev=str(self.seq), body=obj))

    def delete(self, kind: str, key: str) -> None:
        self._fold(Event(source=SOURCE, kind=kind, key=key, op=Op.DELETE))

    def _fold(self, event: Event) -> None:
        self.seq += 1
        self.translator.update(self.state, apply(self.state, self.seq, event))

    def get(self, type_url: str, name: str, cls: type[Message]) -> Any:
        res = self.translator.table.get(type_url, name)
        assert res is not None, f"{type_url} {name} missing"
        wrapper = any_pb2.Any()
        wrapper.ParseFromString(res.body)
        msg = cls()
        wrapper.Unpack(msg)
        return msg

    def routes(self, port: int = 80) -> route_pb2.RouteConfiguration:
        return self.get(ROUTE, f"http.{port}", route_pb2.RouteConfiguration)

    def status(self, kind: str, key: str) -> Any:
        for ref, status in self.translator.statuses.items():
            if ref.kind == kind and ref.key == key:
                return status
        return None


def test_service_with_slices_becomes_eds_cluster_and_ready_endpoints() -> None:
    h = Harness()
    h.put(service("web", ports=(80, 9090)))
    sl = endpoint_slice("web", ["10.0.0.2", "10.0.0.1"])
    sl["endpoints"].append({"addresses": ["10.0.0.9"], "conditions": {"ready": False}})
    h.put(sl)
    cluster = h.get(CLUSTER, "outbound|80||web.default.svc.cluster.local", cluster_pb2.Cluster)
    assert cluster.type == cluster_pb2.Cluster.EDS
    cla = h.get(ENDPOINT, "outbound|80||web.default.svc.cluster.local", endpoint_pb2.ClusterLoadAssignment)
    addresses = [lb.endpoint.address.socket_address.address for g in cla.endpoints for lb in g.lb_endpoints]
    ports = {lb.endpoint.address.socket_address.port_value for g in cla.endpoints for lb in g.lb_endpoints}
    assert addresses == ["10.0.0.1", "10.0.0.2"], "not-ready endpoints are left out, the rest sorted"
    assert ports == {8080}
    # The slice carries no port named http-9090: that port's assignment is empty, not borrowed.
    other = h.get(
        ENDPOINT, "outbound|9090||web.default.svc.cluster.local", endpoint_pb2.ClusterLoadAssignment
    )
    assert not other.endpoints


def test_slice_endpoints_keep_health_zone_and_the_healthiest_duplicate() -> None:
    h = Harness()
    h.put(service("web"))
    first = endpoint_slice("web", ["10.0.0.1"], suffix="a")
    first["endpoints"] += [
        # Terminating but still serving: drained, not dropped.
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": True, "terminating": True}},
        {"addresses": ["10.0.0.3", "10.0.0.4"], "conditions": {}, "zone": "z1"},
        {"addresses": ["10.0.0.5"], "conditions": {"ready": False, "serving": True, "terminating": True}},
    ]
    # Overlapping slice: 10.0.0.5 is ready there (the healthier state wins), 10.0.0.1 draining (loses).
    second = endpoint_slice("web", ["10.0.0.5"], suffix="b")
    second["endpoints"].append(
        {"addresses": ["10.0.0.1"], "conditions": {"ready": False, "serving": True, "terminating": True}}
    )
    fqdn = endpoint_slice("web", ["backend.example.com"], suffix="c")
    fqdn["addressType"] = "FQDN"
    for obj in (first, second, fqdn):
        h.put(obj)
    cla = h.get(ENDPOINT, "outbound|80||web.default.svc.cluster.local", endpoint_pb2.ClusterLoadAssignment)
    got = [
        (g.locality.zone, lb.endpoint.address.socket_address.address, lb.health_status)
        for g in cla.endpoints
        for lb in g.lb_endpoints
    ]
    healthy, draining = health_check_pb2.HEALTHY, health_check_pb2.DRAINING
    assert got == [
        ("", "10.0.0.1", healthy),
        ("", "10.0.0.2", draining),
        ("", "10.0.0.5", healthy),
        ("z1", "10.0.0.3", healthy),
        ("z1", "10.0.0.4", healthy),
    ], "FQDN slices are left out"


def test_a_slice_address_that_is_no_address_reaches_the_assignment_as_it_came() -> None:
    """Slices keep their addresses joined into one string: one holding the separator, or a lone empty
    one, must neither split nor vanish (the assignment says what the slice said)."""
    h = Harness()
    h.put(service("web"))
    h.put(endpoint_slice("web", ["10.0.0.1", "10.0.0.2 10.0.0.3"], suffix="a"))
    h.put(endpoint_slice("web", [""], suffix="b"))
    h.put(endpoint_slice("web", ["10.0.0.4", "10.0.0.5"], suffix="c"))
    cla = h.get(ENDPOINT, "outbound|80||web.default.svc.cluster.local", endpoint_pb2.ClusterLoadAssignment)
    got = [lb.endpoint.address.socket_address.address for g in cla.endpoints for lb in g.lb_endpoints]
    assert got == ["", "10.0.0.1", "10.0.0.2 10.0.0.3", "10.0.0.4", "10.0.0.5"]


def test_external_name_is_strict_dns() -> None:
    h = Harness()
    svc = service("ext")
    svc["spec"].update(type="ExternalName", externalName="api.example.com")
    h.put(svc)
    cluster = h.get(CLUSTER, "outbound|80||ext.default.svc.cluster.local", cluster_pb2.Cluster)
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    socket = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert socket.address == "api.example.com"
    assert h.translator.table.get(ENDPOINT, "outbound|80||ext.default.svc.cluster.local") is None


def test_invalid_service_is_rejected_alone_with_the_field_named() -> None:
    h = Harness()
    h.put(service("good"))
    bad = service("bad")
    bad["spec"]["ports"] = [{"port": "eighty"}]
    h.put(bad)
    status = h.status("Service", "default/bad")
    assert status.state is Verdict.REJECTED
    assert "Service default/bad" in status.reason and "$.spec.ports[0].port" in status.reason
    assert h.translator.table.get(CLUSTER, "outbound|80||good.default.svc.cluster.local") is not None
    assert h.translator.table.get(CLUSTER, "outbound|80||bad.default.svc.cluster.local") is None


def test_deleting_a_service_removes_its_clusters() -> None:
    h = Harness()
    h.put(service("web"))
    h.delete("Service", "default/web")
    assert h.translator.table.get(CLUSTER, "outbound|80||web.default.svc.cluster.local") is None


def test_ingress_routes_follow_higress_order() -> None:
    h = Harness()
    h.put(service("web"))
    obj = ingress("site", "shop.example.com", "web", path="/")
    paths = obj["spec"]["rules"][0]["http"]["paths"]
    backend = paths[0]["backend"]
    paths += [
        {"path": "/api", "pathType": "Prefix", "backend": backend},
        {"path": "/api/v2", "pathType": "Prefix", "backend": backend},
        {"path": "/login", "pathType": "Exact", "backend": backend},
    ]
    h.put(obj)
    vhost = h.routes().virtual_hosts[0]
    assert list(vhost.domains) == ["shop.example.com"]
    order = [r.match.path or r.match.path_separated_prefix or r.match.prefix for r in vhost.routes]
    assert order == ["/login", "/api/v2", "/api", "/"]


def test_named_backend_port_resolves_through_the_service() -> None:
    h = Harness()
    obj = ingress("site", "a.example.com", "web")
    obj["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http-8080"}
    h.put(obj)
    # The Service is unknown yet: the route answers 503 and the Ingress says why.
    route = h.routes().virtual_hosts[0].routes[0]
    assert route.direct_response.status == 503
    assert "service default/web not found" in h.status("Ingress", "default/site").warnings[0]
    h.put(service("web", ports=(8080,)))
    route = h.routes().virtual_hosts[0].routes[0]
    assert route.route.cluster == "outbound|8080||web.default.svc.cluster.local"
    assert h.status("Ingress", "default/site").warnings == []


def test_conflicting_ingresses_oldest_wins_and_loser_is_told() -> None:
    h = Harness()
    h.put(service("old-svc"))
    h.put(service("new-svc"))
    h.put(ingress("newer", "x.example.com", "new-svc", created="2026-02-01T00:00:00Z"))
    h.put(ingress("older", "x.example.com", "old-svc", created="2025-02-01T00:00:00Z"))
    routes = h.routes().virtual_hosts[0].routes
    assert [r.route.cluster for r in routes] == ["outbound|80||old-svc.default.svc.cluster.local"]
    warnings = h.status("Ingress", "default/newer").warnings
    assert warnings and "already served by Ingress default/older" in warnings[0]
    h.delete("Ingress", "default/older")
    routes = h.routes().virtual_hosts[0].routes
    assert [r.route.cluster for r in routes] == ["outbound|80||new-svc.default.svc.cluster.local"]
    assert h.status("Ingress", "default/newer").warnings == []


def test_wildcard_host_default_backend_and_listener_port() -> None:
    h = Harness(http_port=10080)
    obj = ingress("site", "*.example.com", "web")
    obj["spec"]["defaultBackend"] = {"service": {"name": "web", "port": {"number": 80}}}
    h.put(obj)
    hosts = {vh.name: list(vh.domains) for vh in h.routes(10080).virtual_hosts}
    assert hosts == {"*.example.com:10080": ["*.example.com"], "*:10080": ["*"]}
    assert h.translator.table.get(LISTENER, "0.0.0.0_10080") is not None


def test_invalid_ingress_path_is_reported_and_the_rest_serves() -> None:
    h = Harness()
    obj = ingress("site", "a.example.com", "web")
    paths = obj["spec"]["rules"][0]["http"]["paths"]
    paths.append({"path": "no-slash", "pathType": "Prefix", "backend": paths[0]["backend"]})
    h.put(obj)
    assert len(h.routes().virtual_hosts[0].routes) == 1
    assert "must start with '/'" in h.status("Ingress", "default/site").warnings[0]


def test_spliced_route_configuration_equals_protobuf_serialization() -> None:
    h = Harness()
    for i in range(20):
        h.put(service(f"s{i}"))
        h.put(ingress(f"i{i}", f"h{i}.example.com", f"s{i}", path=f"/p{i}"))
    res = h.translator.table.get(ROUTE, "http.80")
    assert res is not None
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(res.body)
    rebuilt = route_pb2.RouteConfiguration()
    wrapper.Unpack(rebuilt)
    assert rebuilt.SerializeToString(deterministic=True) == wrapper.value
    assert any_pb2.Any(type_url=ROUTE, value=wrapper.value).SerializeToString(deterministic=True) == res.body


def _authority_regexes(h: Harness) -> dict[str, list[str]]:
    return {
        vh.name: [hm.string_match.safe_regex.regex for r in vh.routes for hm in r.match.headers]
        for vh in h.routes().virtual_hosts
    }


def test_wildcard_hosts_match_one_label_with_a_regex_envoy_accepts() -> None:
    # A long wildcard host spelled out in the regex would pass Envoy's RE2 limit and make Envoy refuse
    # the route configuration of every host: the label-count form is used instead.
    long_host = "*." + "-".join(["subdomain"] * 8) + ".example.com"
    deep_host = "*." + ".".join(["a" * 12] * 12) + ".example.com"
    h = Harness()
    h.put(service("web"))
    h.put(ingress("short", "*.example.com", "web"))
    h.put(ingress("long", long_host, "web", path="/l"))
    h.put(ingress("deep", deep_host, "web", path="/d"))
    regexes = _authority_regexes(h)
    assert regexes["*.example.com:80"] == ["(?i)[^.]+\\.example\\.com(:[0-9]+)?"]
    assert regexes[f"{long_host}:80"] == ["[^.]+(\\.[^.]+){3}(:[0-9]+)?"]
    for patterns in regexes.values():
        for pattern in patterns:
            assert re2_problem(pattern) is None, pattern
    # Neither form fits for a long host of many labels: served unrestricted, and said so.
    assert regexes[f"{deep_host}:80"] == []
    assert h.status("Ingress", "default/long").warnings == []
    (warning,) = h.status("Ingress", "default/deep").warnings
    assert warning.startswith(f"host {deep_host}: too long to restrict to one label"), warning
