"""Serialized virtual hosts, and what their routes need besides (derived clusters, upstream secrets);
shared by the Ingress and Gateway API handlers and by the listeners they share."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.fold.state import ObjectRef
from xdsbus.model.routes import Route, RouteOrigin, VirtualHostModel
from xdsbus.model.services import ServiceModel
from xdsbus.translate import envoy_routes
from xdsbus.translate.envoy_destinations import derived_clusters, fallback_chain, route_destinations
from xdsbus.translate.global_options.model import DEFAULT_OPTIONS, UpstreamOptions
from xdsbus.translate.rejections import rejection_reason
from xdsbus.translate.route_order import describe_match
from xdsbus.translate.wasm_plugins.chain import PluginChain

Problems = dict[ObjectRef, list[str]]


def origin_ref(origin: RouteOrigin) -> ObjectRef:
    """The object a route came from."""
    return ObjectRef(origin.kind, origin.source, origin.key)


def serve_virtual_host(
    name: str,
    host: str,
    routes: list[Route],
    problems: Problems,
    *,
    plugins: PluginChain,
    error_page_headers: tuple[tuple[str, str], ...] = (),
) -> tuple[bytes, list[Route]]:
    """A serialized virtual host and the routes it serves, with the wasm plugins of `plugins` enabled
    where they apply, and `error_page_headers` on its error pages' re-issued requests.

    A route the generator cannot build (a value out of Envoy's range that a parser let through, a
    translator bug) is left out and reported on the object it came from: it must not stop the
    translation of everything else, nor every restart after it."""
    try:
        return _serialize(name, host, routes, plugins, error_page_headers), routes
    except Exception:
        pass
    kept: list[Route] = []
    for index, route in enumerate(routes):
        try:
            envoy_routes.build_route(route, index)
        except Exception as exc:
            problems.setdefault(origin_ref(route.origin), []).append(
                f"host {host}: {describe_match(route)} is not served: {rejection_reason(exc)}"
            )
        else:
            kept.append(route)
    try:
        return _serialize(name, host, kept, plugins, error_page_headers), kept
    except Exception as exc:
        for route in kept:
            problems.setdefault(origin_ref(route.origin), []).append(
                f"host {host}: {describe_match(route)} is not served: {rejection_reason(exc)}"
            )
        return _serialize(name, host, [], plugins, error_page_headers), []


def route_needs(
    routes: Iterable[Route],
    lookup: Callable[[str], ServiceModel | None],
    upstream: UpstreamOptions = DEFAULT_OPTIONS.upstream,
) -> tuple[dict[ResourceKey, bytes], set[str]]:
    """The derived (policy and fallback) clusters `routes` send to, serialized with the upstream
    connection options, and the SDS names of the upstream TLS they use."""
    clusters: dict[ResourceKey, bytes] = {}
    secrets: set[str] = set()
    for route in routes:
        for dest in route_destinations(route):
            for name, cluster in derived_clusters(dest, lookup, upstream):
                clusters[ResourceKey(CLUSTER, name)] = cluster.SerializeToString(deterministic=True)
            for hop in fallback_chain(dest):
                if hop.policy.tls is not None:
                    secrets.update(n for n in (hop.policy.tls.client_secret, hop.policy.tls.ca_secret) if n)
    return clusters, secrets


def _serialize(
    name: str,
    host: str,
    routes: list[Route],
    plugins: PluginChain,
    error_page_headers: tuple[tuple[str, str], ...],
) -> bytes:
    model = VirtualHostModel(name=name, domains=(host,), routes=tuple(routes))
    vhost = envoy_routes.build_virtual_host(model, error_page_headers)
    plugins.apply(vhost, host, routes)
    return vhost.SerializeToString(deterministic=True)
