"""Small builders for Ingress translation tests: typed Ingresses, a Service lookup, a translate call."""

from __future__ import annotations

from typing import Any

from xdsbus.model.k8s import K8sIngress, decode_object
from xdsbus.model.routes import Destination, PathKind, PathMatch, Route, RouteOrigin
from xdsbus.model.services import ServiceModel, ServicePort, k8s_hostname
from xdsbus.translate.ingress_rules import IngressTranslation, translate_ingress

N = "nginx.ingress.kubernetes.io/"
H = "higress.io/"


def path(
    p: str = "/", backend: str = "web", port: int | str = 80, path_type: str = "Prefix"
) -> dict[str, Any]:
    port_ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"path": p, "pathType": path_type, "backend": {"service": {"name": backend, "port": port_ref}}}


def make_ingress(
    *rules: tuple[str, list[dict[str, Any]]],
    annotations: dict[str, str] | None = None,
    name: str = "site",
    namespace: str = "default",
    created: str = "2026-01-01T00:00:00Z",
    default_backend: dict[str, Any] | None = None,
    tls: list[dict[str, Any]] | None = None,
) -> K8sIngress:
    spec: dict[str, Any] = {"rules": [{"host": h, "http": {"paths": ps}} for h, ps in rules]}
    if default_backend is not None:
        spec["defaultBackend"] = default_backend
    if tls is not None:
        spec["tls"] = tls
    body = {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created,
            "annotations": annotations or {},
        },
        "spec": spec,
    }
    return decode_object(body, K8sIngress)


def services(*specs: tuple[str, tuple[int, ...]], namespace: str = "default") -> dict[str, ServiceModel]:
    out: dict[str, ServiceModel] = {}
    for name, ports in specs:
        host = k8s_hostname(name, namespace)
        out[host] = ServiceModel(
            hostname=host, ports=tuple(ServicePort(number=p, name=f"http-{p}") for p in ports)
        )
    return out


def translate(ingress: K8sIngress, known: dict[str, ServiceModel] | None = None) -> IngressTranslation:
    meta = ingress.metadata
    return translate_ingress(ingress, "test/unit", f"{meta.namespace}/{meta.name}", (known or {}).get)


def annotated(
    annotations: dict[str, str], known: dict[str, ServiceModel] | None = None
) -> IngressTranslation:
    """One rule, host a.example.com, path /foo (Prefix) to web:80, with `annotations`."""
    return translate(make_ingress(("a.example.com", [path("/foo")]), annotations=annotations), known)


def only_route(translation: IngressTranslation) -> Route:
    routes = [hr.route for hr in translation.routes]
    assert len(routes) == 1, routes
    return routes[0]


def origin(key: str = "default/site", created: str = "2026-01-01T00:00:00Z") -> RouteOrigin:
    return RouteOrigin(created=created, kind="Ingress", key=key, source="test/unit")


def web(port: int = 80, name: str = "web", **kw: Any) -> Destination:
    return Destination(hostname=k8s_hostname(name, "default"), port=port, **kw)


def prefix(value: str) -> PathMatch:
    return PathMatch(kind=PathKind.PREFIX, value=value)
