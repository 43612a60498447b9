"""HTTPRoute rules to routes of the internal model: matches, filters, weighted backends, timeouts and
retries. One model route per match of a rule (a rule without matches matches every path)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec

from xdsbus.model.gateway_api import (
    HeaderModifier,
    HTTPBackendRef,
    HTTPHeaderMatch,
    HTTPPathMatch,
    HTTPRoute,
    HTTPRouteFilter,
    HTTPRouteMatch,
    HTTPRouteRetry,
    HTTPRouteTimeouts,
)
from xdsbus.model.routes import (
    CorsPolicy,
    Destination,
    HeaderMatch,
    HeaderMutation,
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
)
from xdsbus.translate.gateway_api.backends import INVALID_BACKEND_STATUS, BackendResolver, invalid_destination
from xdsbus.translate.gateway_api.precedence import PrecedenceKey, precedence_key

# A rule the gateway cannot carry out (no backendRefs, only invalid ones, an unsupported filter).
RULE_ERROR_STATUS = 500

_MATCH_KINDS = {"Exact": StringMatchKind.EXACT, "RegularExpression": StringMatchKind.REGEX}
_DURATION = re.compile(r"(\d+)(ms|h|m|s)")
_UNIT_MS = {"h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_ROUTE_FILTERS = {
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestRedirect",
    "URLRewrite",
    "RequestMirror",
    "CORS",
}


class GatewayRouteError(ValueError):
    """Something in a route that makes a rule unservable; the message names it."""


def parse_duration(text: str) -> int:
    """A Gateway API duration (GEP-2257: `1h`, `500ms`, `1m30s`) in milliseconds."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise GatewayRouteError(f"invalid duration {text!r}")
    return sum(int(n) * _UNIT_MS[u] for n, u in parts)


def header_matches(matches: list[HTTPHeaderMatch]) -> tuple[HeaderMatch, ...]:
    """Header conditions; names are case-insensitive and the first condition on a name wins."""
    out: dict[str, HeaderMatch] = {}
    for m in matches:
        name = m.name.lower()
        if name in out:
            continue
        kind = _MATCH_KINDS.get(m.type)
        if kind is None:
            raise GatewayRouteError(f"header match type {m.type} is not supported")
        out[name] = HeaderMatch(name=name, kind=kind, value=m.value)
    return tuple(out.values())


def _query_matches(matches: list[HTTPHeaderMatch]) -> tuple[QueryMatch, ...]:
    out: dict[str, QueryMatch] = {}
    for m in matches:
        if m.name in out:
            continue
        kind = _MATCH_KINDS.get(m.type)
        if kind is None:
            raise GatewayRouteError(f"query parameter match type {m.type} is not supported")
        out[m.name] = QueryMatch(name=m.name, kind=kind, value=m.value)
    return tuple(out.values())


def _path(match: HTTPPathMatch | None) -> PathMatch:
    match = match or HTTPPathMatch()
    if match.type == "Exact":
        return PathMatch(kind=PathKind.EXACT, value=match.value)
    if match.type == "PathPrefix":
        # `/foo/` matches `/foo` and `/foo/bar` like `/foo` (a trailing slash is ignored).
        value = match.value.rstrip("/") or "/"
        return PathMatch(kind=PathKind.PREFIX, value=value)
    if match.type == "RegularExpression":
        return PathMatch(kind=PathKind.REGEX, value=match.value)
    raise GatewayRouteError(f"path match type {match.type} is not supported")


def header_mutation(modifier: HeaderModifier | None) -> HeaderMutation | None:
    if modifier is None:
        return None
    return HeaderMutation(
        add=tuple((h.name, h.value) for h in modifier.add),
        set=tuple((h.name, h.value) for h in modifier.set),
        remove=tuple(modifier.remove),
    )


def _prefix_replacement(path: PathMatch, replacement: str) -> tuple[str, str, str]:
    """(prefix, regex, substitution) replacing the part of the path a PathPrefix match matched."""
    if path.kind is not PathKind.PREFIX:
        raise GatewayRouteError("ReplacePrefixMatch needs a PathPrefix match")
    if path.value == "/" or replacement.endswith("/"):
        # Envoy's prefix rewrite would glue the rest to the replacement (`/` + `foo` → `/xfoo`); the
        # regex eats the separating slashes and the replacement ends with exactly one.
        prefix = "" if path.value == "/" else re.escape(path.value)
        return "", f"^{prefix}/*", replacement.rstrip("/") + "/"
    return replacement, "", ""


def _redirect(f: HTTPRouteFilter, path: PathMatch, listener_port: int) -> Redirect:
    rr = f.request_redirect
    if rr is None:
        raise GatewayRouteError("RequestRedirect filter without requestRedirect")
    scheme = (rr.scheme or "").lower()
    # The spec's defaults: the scheme's well-known port, else the listener's port.
    port = rr.port or ({"https": 443, "http": 80}.get(scheme) or listener_port)
    full = prefix = regex = substitution = ""
    if rr.path is not None:
        if rr.path.type == "ReplaceFullPath":
            full = rr.path.replace_full_path or "/"
        elif rr.path.type == "ReplacePrefixMatch":
            prefix, regex, substitution = _prefix_replacement(path, rr.path.replace_prefix_match or "/")
        else:
            raise GatewayRouteError(f"redirect path type {rr.path.type} is not supported")
    return Redirect(
        scheme=scheme,
        host=rr.hostname or "",
        port=port,
        path=full,
        prefix=prefix,
        regex=regex,
        substitution=substitution,
        code=rr.status_code,
    )


def _rewrite(f: HTTPRouteFilter, path: PathMatch) -> Rewrite:
    rw = f.url_rewrite
    if rw is None:
        raise GatewayRouteError("URLRewrite filter without urlRewrite")
    full = prefix = regex = substitution = ""
    if rw.path is not None:
        if rw.path.type == "ReplaceFullPath":
            full = rw.path.replace_full_path or "/"
        elif rw.path.type == "ReplacePrefixMatch":
            prefix, regex, substitution = _prefix_replacement(path, rw.path.replace_prefix_match or "/")
        else:
            raise GatewayRouteError(f"rewrite path type {rw.path.type} is not supported")
    return Rewrite(host=rw.hostname or "", path=full, prefix=prefix, regex=regex, substitution=substitution)


def _cors(f: HTTPRouteFilter) -> CorsPolicy:
    cors = f.cors
    if cors is None:
        raise GatewayRouteError("CORS filter without cors")
    origins: list[tuple[StringMatchKind, str]] = []
    for origin in cors.allow_origins:
        if origin == "*":
            origins.append((StringMatchKind.REGEX, ".*"))
        elif "*" in origin:
            origins.append((StringMatchKind.REGEX, ".*".join(re.escape(p) for p in origin.split("*"))))
        else:
            origins.append((StringMatchKind.EXACT, origin))
    return CorsPolicy(
        allow_origins=tuple(origins),
        allow_methods=tuple(cors.allow_methods),
        allow_headers=tuple(cors.allow_headers),
        expose_headers=tuple(cors.expose_headers),
        allow_credentials=cors.allow_credentials,
        max_age_seconds=cors.max_age,
    )


def _mirror(f: HTTPRouteFilter, resolver: BackendResolver) -> Mirror | None:
    rm = f.request_mirror
    if rm is None:
        raise GatewayRouteError("RequestMirror filter without requestMirror")
    dest = resolver.resolve(rm.backend_ref, weight=1)
    if dest is None:
        return None
    millionths = 1_000_000
    if rm.percent is not None:
        millionths = rm.percent * 10_000
    elif rm.fraction is not None and rm.fraction.denominator > 0:
        millionths = rm.fraction.numerator * 1_000_000 // rm.fraction.denominator
    return Mirror(destination=dest, millionths=max(0, min(millionths, 1_000_000)))


@dataclass
class RuleAction:
    """What a rule does, apart from the parts that depend on each match's path."""

    destinations: tuple[Destination, ...]
    direct_status: int
    cluster_not_found_status: int
    filters: list[HTTPRouteFilter]


def rule_destinations(
    backend_refs: list[HTTPBackendRef], resolver: BackendResolver, warnings: list[str]
) -> tuple[tuple[Destination, ...], int, int]:
    """(destinations, direct status, cluster-not-found status) of a rule's backendRefs."""
    if not backend_refs:
        return (), RULE_ERROR_STATUS, 0
    dests: list[Destination] = []
    invalid_weight = 0
    invalid = 0
    for ref in backend_refs:
        dest = resolver.resolve(ref)
        if dest is None:
            invalid += 1
            invalid_weight += ref.weight
            continue
        request = response = None
        for f in ref.filters:
            if f.type == "RequestHeaderModifier":
                request = header_mutation(f.request_header_modifier)
            elif f.type == "ResponseHeaderModifier":
                response = header_mutation(f.response_header_modifier)
            else:
                warnings.append(f"backendRef {ref.name}: filter {f.type} is not supported; ignored")
        if request is not None or response is not None:
            dest = msgspec.structs.replace(dest, request_headers=request, response_headers=response)
        dests.append(dest)
    if not dests:
        return (), RULE_ERROR_STATUS, 0
    if invalid and invalid_weight > 0:
        dests.append(invalid_destination(invalid_weight))
        return tuple(dests), 0, INVALID_BACKEND_STATUS
    return tuple(dests), 0, 0


def apply_filters(
    route: Route, filters: list[HTTPRouteFilter], resolver: BackendResolver, listener_port: int
) -> Route:
    """`route` with a rule's filters applied (they may depend on the route's path match)."""
    request: HeaderMutation | None = None
    response: HeaderMutation | None = None
    redirect: Redirect | None = None
    rewrite: Rewrite | None = None
    cors: CorsPolicy | None = None
    mirrors: list[Mirror] = []
    for f in filters:
        if f.type not in _ROUTE_FILTERS:
            raise GatewayRouteError(f"filter {f.type} is not supported")
        if f.type == "RequestHeaderModifier":
            request = header_mutation(f.request_header_modifier)
        elif f.type == "ResponseHeaderModifier":
            response = header_mutation(f.response_header_modifier)
        elif f.type == "RequestRedirect":
            redirect = _redirect(f, route.path, listener_port)
        elif f.type == "URLRewrite":
            rewrite = _rewrite(f, route.path)
        elif f.type == "CORS":
            cors = _cors(f)
        else:
            mirror = _mirror(f, resolver)
            if mirror is not None:
                mirrors.append(mirror)
    return msgspec.structs.replace(
        route,
        request_headers=request,
        response_headers=response,
        redirect=redirect,
        rewrite=rewrite,
        cors=cors,
        mirrors=tuple(mirrors),
    )


def _timeouts(
    timeouts: HTTPRouteTimeouts | None, retry: RetryPolicy | None
) -> tuple[int, RetryPolicy | None]:
    """The route timeout and the retry policy with its per-try timeout (the backendRequest timeout)."""
    if timeouts is None:
        return 0, retry
    request = parse_duration(timeouts.request) if timeouts.request else 0
    backend = parse_duration(timeouts.backend_request) if timeouts.backend_request else 0
    if not backend:
        return request, retry
    if retry is not None:
        return request, msgspec.structs.replace(retry, per_try_timeout_ms=backend)
    # One try: the backend request timeout is the whole request's unless the request timeout is shorter.
    return (min(request, backend) if request else backend), None


def _retry(retry: HTTPRouteRetry | None) -> RetryPolicy | None:
    if retry is None:
        return None
    # Connection failures are always retried; listed codes only with `retriable-status-codes`.
    return RetryPolicy(
        attempts=1 if retry.attempts is None else retry.attempts,
        retry_on=("connect-failure", "refused-stream", "reset"),
        retriable_status_codes=tuple(retry.codes),
    )


def http_route_routes(
    route: HTTPRoute,
    origin: RouteOrigin,
    listener_port: int,
    resolver: BackendResolver,
    warnings: list[str],
) -> list[tuple[PrecedenceKey, Route]]:
    """Every match of every rule of an HTTPRoute as a model route, with its precedence key."""
    meta = route.metadata
    out: list[tuple[PrecedenceKey, Route]] = []
    for rule_index, rule in enumerate(route.spec.rules):
        dests, status, not_found = rule_destinations(rule.backend_refs, resolver, warnings)
        timeout_ms, retry = _timeouts(rule.timeouts, _retry(rule.retry))
        for match_index, match in enumerate(rule.matches or [HTTPRouteMatch()]):
            name = f"{origin.kind.lower()}/{origin.key}/rule/{rule.name or rule_index}/match/{match_index}"
            try:
                path = _path(match.path)
            except GatewayRouteError as exc:
                warnings.append(f"rule {rule_index}: {exc}; the match is not served")
                continue
            try:
                model = Route(
                    path=path,
                    headers=header_matches(match.headers),
                    query=_query_matches(match.query_params),
                    methods=(match.method.upper(),) if match.method else (),
                    destinations=dests,
                    direct_status=status,
                    cluster_not_found_status=not_found,
                    timeout_ms=timeout_ms,
                    retry=retry,
                    origin=origin,
                    name=name,
                )
                model = apply_filters(model, rule.filters, resolver, listener_port)
            except GatewayRouteError as exc:
                warnings.append(f"rule {rule_index}: {exc}; it answers {RULE_ERROR_STATUS}")
                model = Route(path=path, direct_status=RULE_ERROR_STATUS, origin=origin, name=name)
            if model.redirect is not None:
                # A redirect answers by itself: no destination, nothing to fail.
                model = msgspec.structs.replace(
                    model, destinations=(), direct_status=0, cluster_not_found_status=0
                )
            key = precedence_key(model, meta.creation_timestamp, origin.key, rule_index, match_index)
            out.append((key, model))
    return out
