"""GRPCRoute rules to routes of the internal model: a gRPC method is the path `/<service>/<method>`;
backends are spoken to over HTTP/2."""

from __future__ import annotations

import re

import msgspec

from xdsbus.model.gateway_api import GRPCMethodMatch, GRPCRoute, GRPCRouteMatch
from xdsbus.model.routes import PathKind, PathMatch, Route, RouteOrigin
from xdsbus.translate.gateway_api.backends import BackendResolver
from xdsbus.translate.gateway_api.httproute import (
    RULE_ERROR_STATUS,
    GatewayRouteError,
    apply_filters,
    checked_regex,
    header_matches,
    rule_destinations,
)
from xdsbus.translate.gateway_api.precedence import PrecedenceKey, precedence_key

_GRPC_FILTERS = {"RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror"}
_NAME_PART = "[^/]+"


def method_path(method: GRPCMethodMatch | None) -> PathMatch:
    if method is None or (not method.service and not method.method):
        return PathMatch(kind=PathKind.PREFIX, value="/")
    if method.type == "Exact":
        if method.service and method.method:
            return PathMatch(kind=PathKind.EXACT, value=f"/{method.service}/{method.method}")
        if method.service:
            return PathMatch(kind=PathKind.PREFIX, value=f"/{method.service}/")
        return PathMatch(kind=PathKind.REGEX, value=f"/{_NAME_PART}/{re.escape(method.method or '')}")
    if method.type == "RegularExpression":
        pattern = f"/{method.service or _NAME_PART}/{method.method or _NAME_PART}"
        return PathMatch(kind=PathKind.REGEX, value=checked_regex(pattern, "method"))
    raise GatewayRouteError(f"method match type {method.type} is not supported")


def grpc_route_routes(
    route: GRPCRoute,
    origin: RouteOrigin,
    listener_port: int,
    resolver: BackendResolver,
    warnings: list[str],
    invalid_rules: set[int],
) -> list[tuple[PrecedenceKey, Route]]:
    """Every match of every rule of a GRPCRoute as a model route, with its precedence key (invalid
    rules as for HTTPRoute)."""
    meta = route.metadata
    out: list[tuple[PrecedenceKey, Route]] = []
    for rule_index, rule in enumerate(route.spec.rules):
        dests, status, not_found = rule_destinations(rule.backend_refs, resolver, warnings)
        for match_index, match in enumerate(rule.matches or [GRPCRouteMatch()]):
            name = f"{origin.kind.lower()}/{origin.key}/rule/{rule.name or rule_index}/match/{match_index}"
            try:
                path = method_path(match.method)
            except GatewayRouteError as exc:
                warnings.append(f"rule {rule_index}: {exc}; the match is not served")
                invalid_rules.add(rule_index)
                continue
            try:
                unsupported = [f.type for f in rule.filters if f.type not in _GRPC_FILTERS]
                if unsupported:
                    raise GatewayRouteError(f"filter {unsupported[0]} is not supported")
                model = Route(
                    path=path,
                    headers=header_matches(match.headers),
                    destinations=dests,
                    direct_status=status,
                    cluster_not_found_status=not_found,
                    origin=origin,
                    name=name,
                )
                model = apply_filters(model, rule.filters, resolver, listener_port)
            except GatewayRouteError as exc:
                warnings.append(f"rule {rule_index}: {exc}; it answers {RULE_ERROR_STATUS}")
                invalid_rules.add(rule_index)
                model = msgspec.structs.replace(
                    Route(path=path, origin=origin, name=name), direct_status=RULE_ERROR_STATUS
                )
            key = precedence_key(model, meta.creation_timestamp, origin.key, rule_index, match_index)
            out.append((key, model))
    return out
