"""Builders of Gateway API objects for the translator tests, and a harness that folds them under the
keys the watchers use (`name` for cluster-scoped kinds, `namespace/name` for the others)."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc

from tests.translate.translator_harness import SOURCE, Harness
from xdsbus.contract.status import ObjectStatus
from xdsbus.events import Event, Op

CONTROLLER = "higress.io/gateway-controller"
NS = "infra"
CREATED = "2026-01-01T00:00:00Z"
_CLUSTER_SCOPED = {"GatewayClass", "Namespace"}


def meta(name: str, namespace: str = NS, created: str = CREATED, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": namespace, "creationTimestamp": created, "generation": 1, **extra}


def gateway_class(name: str = "higress", controller: str = CONTROLLER) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name, "creationTimestamp": CREATED, "generation": 1},
        "spec": {"controllerName": controller},
    }


def listener(
    name: str = "http",
    port: int = 80,
    protocol: str = "HTTP",
    *,
    hostname: str | None = None,
    from_: str = "Same",
    selector: dict[str, str] | None = None,
    certs: list[dict[str, str]] | None = None,
    kinds: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": port, "protocol": protocol}
    namespaces: dict[str, Any] = {"from": from_}
    if selector is not None:
        namespaces["selector"] = {"matchLabels": selector}
    out["allowedRoutes"] = {"namespaces": namespaces}
    if kinds is not None:
        out["allowedRoutes"]["kinds"] = kinds
    if hostname is not None:
        out["hostname"] = hostname
    if certs is not None:
        out["tls"] = {"mode": "Terminate", "certificateRefs": certs}
    return out


def gateway(
    name: str = "gw",
    listeners: list[dict[str, Any]] | None = None,
    *,
    namespace: str = NS,
    cls: str = "higress",
) -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "Gateway",
        "metadata": meta(name, namespace),
        "spec": {"gatewayClassName": cls, "listeners": listeners or [listener()]},
    }


def backend(name: str = "web", port: int = 8080, weight: int | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": port, **extra}
    if weight is not None:
        out["weight"] = weight
    return out


def rule(
    *,
    path: tuple[str, str] | None = None,
    matches: list[dict[str, Any]] | None = None,
    backends: list[dict[str, Any]] | None = None,
    filters: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"backendRefs": [backend()] if backends is None else backends, **extra}
    if path is not None:
        out["matches"] = [{"path": {"type": path[0], "value": path[1]}}]
    if matches is not None:
        out["matches"] = matches
    if filters is not None:
        out["filters"] = filters
    return out


def http_route(
    name: str = "route",
    rules: list[dict[str, Any]] | None = None,
    *,
    namespace: str = NS,
    parents: list[dict[str, Any]] | None = None,
    hostnames: list[str] | None = None,
    created: str = CREATED,
    kind: str = "HTTPRoute",
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "parentRefs": parents if parents is not None else [{"name": "gw", "namespace": NS}],
        "rules": rules if rules is not None else [rule()],
    }
    if hostnames is not None:
        spec["hostnames"] = hostnames
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": kind,
        "metadata": meta(name, namespace, created),
        "spec": spec,
    }


def service(
    name: str = "web", namespace: str = NS, ports: tuple[int, ...] = (8080,), **port_extra: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, namespace),
        "spec": {"ports": [{"name": f"p{p}", "port": p, "targetPort": 3000, **port_extra} for p in ports]},
    }


def reference_grant(
    name: str, namespace: str, from_kind: str, from_namespace: str, to_kind: str, to_name: str | None = None
) -> dict[str, Any]:
    to: dict[str, Any] = {"group": "", "kind": to_kind}
    if to_name:
        to["name"] = to_name
    group = "gateway.networking.k8s.io"
    return {
        "apiVersion": "gateway.networking.k8s.io/v1beta1",
        "kind": "ReferenceGrant",
        "metadata": meta(name, namespace),
        "spec": {"from": [{"group": group, "kind": from_kind, "namespace": from_namespace}], "to": [to]},
    }


def namespace(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


class GatewayHarness(Harness):
    def event(self, body: dict[str, Any], *, sealed: bool = True) -> Event:
        event = super().event(body, sealed=sealed)
        if body["kind"] in _CLUSTER_SCOPED:
            return Event(
                source=SOURCE,
                kind=event.kind,
                key=body["metadata"]["name"],
                op=Op.UPSERT,
                rev=event.rev,
                body=event.body,
            )
        return event

    def gw_status(self, kind: str, key: str) -> ObjectStatus:
        status = self.status(kind, key)
        assert status is not None, f"no status for {kind} {key}"
        return status

    def routes(self, host: str = "*", config: str = "http.80") -> list[rc.Route]:
        return list(self.vhost(host, config).routes)


def cond(status: ObjectStatus, type_: str, parent: int | None = None) -> tuple[str, str]:
    """(status, reason) of a condition of an object, or of one of its parents."""
    conditions = status.conditions if parent is None else status.parents[parent].conditions
    found = [c for c in conditions if c.type == type_]
    assert found, f"no {type_} in {conditions}"
    return found[0].status, found[0].reason


def cluster_of(route: rc.Route) -> str:
    return route.route.cluster


def weighted(route: rc.Route) -> list[tuple[str, int]]:
    return [(w.name, w.weight.value) for w in route.route.weighted_clusters.clusters]


def svc_cluster(name: str = "web", port: int = 8080, namespace: str = NS) -> str:
    return f"outbound|{port}||{name}.{namespace}.svc.cluster.local"
