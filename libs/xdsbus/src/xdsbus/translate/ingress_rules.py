"""Ingress host and path rules into the route model (plain Kubernetes semantics).

Annotations and TLS are translated elsewhere; this module knows rules, paths and backends only.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from xdsbus.model.k8s import IngressBackend, K8sIngress
from xdsbus.model.routes import Destination, PathKind, PathMatch, Route, RouteOrigin
from xdsbus.model.services import ServiceModel, k8s_hostname

# Look up a Service by hostname; None when the Service is unknown.
ServiceLookup = Callable[[str], ServiceModel | None]

WILDCARD_HOST = "*"


class IngressError(ValueError):
    """An Ingress that cannot be translated at all."""


class HostRoute(msgspec.Struct, frozen=True):
    """A route of an Ingress and the virtual host it belongs to."""

    host: str
    route: Route


class IngressTranslation(msgspec.Struct, frozen=True):
    routes: list[HostRoute]
    # Hostnames of the Services this Ingress points at: a change to one of them re-translates it.
    services: list[str]
    warnings: list[str]


def _path_match(path: str, path_type: str) -> PathMatch:
    path = path or "/"
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with '/'")
    if path_type == "Exact":
        return PathMatch(kind=PathKind.EXACT, value=path)
    if path_type in ("Prefix", "ImplementationSpecific"):
        # Higress reads ImplementationSpecific as a prefix unless use-regex is set.
        trimmed = path.rstrip("/") or "/"
        return PathMatch(kind=PathKind.PREFIX, value=trimmed)
    raise ValueError(f"pathType {path_type!r} is not Exact, Prefix or ImplementationSpecific")


def _host(host: str) -> str:
    if not host:
        return WILDCARD_HOST
    if host.startswith("*.") and "*" not in host[2:]:
        return host.lower()
    if "*" in host:
        raise ValueError(f"host {host!r}: a wildcard must be the whole first label")
    return host.lower()


def _destination(
    backend: IngressBackend, namespace: str, lookup: ServiceLookup, services: list[str]
) -> tuple[Destination | None, str]:
    if backend.service is None:
        return None, "backend has no service (resource backends are not supported)"
    hostname = k8s_hostname(backend.service.name, namespace)
    services.append(hostname)
    port = backend.service.port
    if port.number:
        return Destination(hostname=hostname, port=port.number), ""
    service = lookup(hostname)
    if service is None:
        return None, f"service {namespace}/{backend.service.name} not found"
    for candidate in service.ports:
        if candidate.name == port.name:
            return Destination(hostname=hostname, port=candidate.number), ""
    return None, f"service {namespace}/{backend.service.name} has no port named {port.name!r}"


def translate_ingress(
    ingress: K8sIngress, source: str, key: str, lookup: ServiceLookup
) -> IngressTranslation:
    """Routes of one Ingress. Rules that cannot be translated become warnings; the rest still serve."""
    meta = ingress.metadata
    origin = RouteOrigin(created=meta.creation_timestamp, kind="Ingress", key=key, source=source)
    routes: list[HostRoute] = []
    services: list[str] = []
    warnings: list[str] = []
    for rule_index, rule in enumerate(ingress.spec.rules):
        try:
            host = _host(rule.host)
        except ValueError as exc:
            warnings.append(f"rules[{rule_index}]: {exc}")
            continue
        for path_index, path in enumerate(rule.http.paths if rule.http else []):
            where = f"rules[{rule_index}].http.paths[{path_index}]"
            try:
                match = _path_match(path.path, path.path_type)
            except ValueError as exc:
                warnings.append(f"{where}: {exc}")
                continue
            dest, problem = _destination(path.backend, meta.namespace, lookup, services)
            if problem:
                warnings.append(f"{where}: {problem}")
            routes.append(
                HostRoute(
                    host=host,
                    route=Route(
                        path=match, destinations=(dest,) if dest else (), direct_status=503, origin=origin
                    ),
                )
            )
    if ingress.spec.default_backend is not None:
        dest, problem = _destination(ingress.spec.default_backend, meta.namespace, lookup, services)
        if problem:
            warnings.append(f"defaultBackend: {problem}")
        routes.append(
            HostRoute(
                host=WILDCARD_HOST,
                route=Route(
                    path=PathMatch(kind=PathKind.PREFIX, value="/"),
                    destinations=(dest,) if dest else (),
                    direct_status=503,
                    origin=origin,
                ),
            )
        )
    if not routes and warnings:
        raise IngressError("; ".join(warnings))
    return IngressTranslation(routes=routes, services=sorted(set(services)), warnings=warnings)
