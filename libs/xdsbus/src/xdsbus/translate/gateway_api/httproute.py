"""HTTPRoute rules to routes of the internal model: matches, filters, weighted backends, timeouts and
retries. One model route per match of a rule (a rule without matches matches every path), split into
consecutive routes sharing the match when weighted backendRefs redirect or rewrite differently."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import msgspec

from xdsbus.model.gateway_api import (
    HeaderModifier,
    HTTPBackendRef,
    HTTPHeaderMatch,
    HTTPPathMatch,
    HTTPPathModifier,
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
from xdsbus.translate.ingress_annotations.re2 import re2_problem

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


def checked_regex(pattern: str, what: str) -> str:
    """`pattern` when Envoy would accept it; otherwise a GatewayRouteError naming `what` and why, so
    the rule is refused alone instead of Envoy refusing every route (docs/design.md §6)."""
    reason = re2_problem(pattern)
    if reason:
        raise GatewayRouteError(f"{what} regex {pattern!r} {reason}")
    return pattern


def _match_value(kind: StringMatchKind, value: str, what: str) -> str:
    return checked_regex(value, what) if kind is StringMatchKind.REGEX else value


def parse_duration(text: str, field: str) -> int:
    """A Gateway API duration (GEP-2257: `1h`, `500ms`, `1m30s`) in milliseconds; the error names the
    `field` it was read from."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise GatewayRouteError(f"invalid {field} duration {text!r}")
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
        value = _match_value(kind, m.value, f"header {m.name}")
        out[name] = HeaderMatch(name=name, kind=kind, value=value)
    return tuple(out.values())


def _query_matches(matches: list[HTTPHeaderMatch]) -> tuple[QueryMatch, ...]:
    out: dict[str, QueryMatch] = {}
    for m in matches:
        if m.name in out:
            continue
        kind = _MATCH_KINDS.get(m.type)
        if kind is None:
            raise GatewayRouteError(f"query parameter match type {m.type} is not supported")
        value = _match_value(kind, m.value, f"query parameter {m.name}")
        out[m.name] = QueryMatch(name=m.name, kind=kind, value=value)
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
        return PathMatch(kind=PathKind.REGEX, value=checked_regex(match.value, "path"))
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
    """(prefix, regex, substitution) replacing the part of the path a PathPrefix match matched.

    The matched prefix never ends with `/` (see `_path`) and neither does the replacement here: a trailing
    slash of either only separates it from the rest, so `/foo` → `/x`, `/foo/` → `/x/`, `/foo/bar` →
    `/x/bar` whether the match or the replacement is written with one or not.
    """
    if path.kind is not PathKind.PREFIX:
        raise GatewayRouteError("ReplacePrefixMatch needs a PathPrefix match")
    stem = replacement.rstrip("/")
    if not stem:
        # Replacing with `/`: the rest keeps one leading slash (`/foo` → `/`, `/foo/bar` → `/bar`).
        prefix = "" if path.value == "/" else re.escape(path.value)
        return "", checked_regex(f"^{prefix}/*", "ReplacePrefixMatch"), "/"
    if path.value == "/":
        # Every path follows the replacement (`/bar` → `/x/bar`), except `/` itself, which becomes the
        # replacement alone (`/x`, not `/x/`). RE2 substitutions have no conditionals: the first
        # alternative matches only `/` and leaves the group empty; the second captures any other path.
        # Envoy's prefix rewrite cannot do it (`/` + `bar` → `/xbar`). `\` would start a group reference.
        return "", "^/$|^(/.+)$", stem.replace("\\", "\\\\") + "\\1"
    # Envoy's prefix rewrite of a path-separated prefix keeps the separator: `/foo/bar` → `/x/bar`.
    return stem, "", ""


def _path_modifier(
    modifier: HTTPPathModifier | None, path: PathMatch, what: str
) -> tuple[str, str, str, str]:
    """(full path, prefix, regex, substitution) of a redirect's or rewrite's path part; all empty when
    it has none."""
    if modifier is None:
        return "", "", "", ""
    if modifier.type == "ReplaceFullPath":
        return modifier.replace_full_path or "/", "", "", ""
    if modifier.type == "ReplacePrefixMatch":
        return "", *_prefix_replacement(path, modifier.replace_prefix_match or "/")
    raise GatewayRouteError(f"{what} path type {modifier.type} is not supported")


def _redirect(f: HTTPRouteFilter, path: PathMatch, listener_port: int) -> Redirect:
    rr = f.request_redirect
    if rr is None:
        raise GatewayRouteError("RequestRedirect filter without requestRedirect")
    scheme = (rr.scheme or "").lower()
    # The spec's defaults: the scheme's well-known port, else the listener's port.
    port = rr.port or ({"https": 443, "http": 80}.get(scheme) or listener_port)
    full, prefix, regex, substitution = _path_modifier(rr.path, path, "redirect")
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
    full, prefix, regex, substitution = _path_modifier(rw.path, path, "rewrite")
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
            pattern = ".*".join(re.escape(p) for p in origin.split("*"))
            origins.append((StringMatchKind.REGEX, checked_regex(pattern, f"CORS origin {origin}")))
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


@dataclass(frozen=True)
class BackendPathFilters:
    """A backendRef's filters that decide whether and where its requests go: they run only for the
    requests forwarded to that backend, so they cannot live on its weighted cluster entry."""

    redirect: HTTPRouteFilter | None = None
    rewrite: HTTPRouteFilter | None = None


_NO_PATH_FILTERS = BackendPathFilters()


@dataclass(frozen=True)
class RuleAction:
    """What a rule's backendRefs do, apart from the parts that depend on each match's path."""

    destinations: tuple[Destination, ...]
    direct_status: int
    cluster_not_found_status: int
    # One per destination, in the same order.
    path_filters: tuple[BackendPathFilters, ...]


def rule_action(
    backend_refs: list[HTTPBackendRef], resolver: BackendResolver, warnings: list[str], *, path_filters: bool
) -> RuleAction:
    """The destinations of a rule's backendRefs, with their header modifiers, and their RequestRedirect
    and URLRewrite filters when `path_filters` (otherwise those are ignored with a warning)."""
    if not backend_refs:
        return RuleAction((), RULE_ERROR_STATUS, 0, ())
    dests: list[Destination] = []
    filters: list[BackendPathFilters] = []
    invalid_weight = 0
    invalid = 0
    for ref in backend_refs:
        dest = resolver.resolve(ref)
        if dest is None:
            invalid += 1
            invalid_weight += ref.weight
            continue
        request = response = None
        redirect = rewrite = None
        for f in ref.filters:
            if f.type == "RequestHeaderModifier":
                request = header_mutation(f.request_header_modifier)
            elif f.type == "ResponseHeaderModifier":
                response = header_mutation(f.response_header_modifier)
            elif path_filters and f.type == "RequestRedirect":
                redirect = f
            elif path_filters and f.type == "URLRewrite":
                rewrite = f
            else:
                warnings.append(f"backendRef {ref.name}: filter {f.type} is not supported; ignored")
        if request is not None or response is not None:
            dest = msgspec.structs.replace(dest, request_headers=request, response_headers=response)
        dests.append(dest)
        filters.append(BackendPathFilters(redirect=redirect, rewrite=rewrite))
    if not dests:
        return RuleAction((), RULE_ERROR_STATUS, 0, ())
    if invalid and invalid_weight > 0:
        dests.append(invalid_destination(invalid_weight))
        filters.append(_NO_PATH_FILTERS)
        return RuleAction(tuple(dests), 0, INVALID_BACKEND_STATUS, tuple(filters))
    return RuleAction(tuple(dests), 0, 0, tuple(filters))


def rule_destinations(
    backend_refs: list[HTTPBackendRef], resolver: BackendResolver, warnings: list[str]
) -> tuple[tuple[Destination, ...], int, int]:
    """(destinations, direct status, cluster-not-found status) of a rule's backendRefs, whose filters
    may only modify headers (GRPCRoute)."""
    action = rule_action(backend_refs, resolver, warnings, path_filters=False)
    return action.destinations, action.direct_status, action.cluster_not_found_status


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


_Forwarding = tuple[Redirect | None, Rewrite | None]


def split_by_backend_filters(route: Route, action: RuleAction, listener_port: int) -> list[Route]:
    """`route` (with the rule's filters applied) as the routes that carry out its backendRefs'
    RequestRedirect and URLRewrite filters, in order.

    A backendRef's filter replaces the rule's filter of the same type for the requests sent to it.
    Destinations that redirect and rewrite alike share one route; when they do not, the match is split
    into consecutive routes, one per such group, each taking its weight's share of the requests (see
    `Route.split_millionths`). A weight-0 destination stays only in a group with traffic: no request
    reaches it, so its filters never run.
    """
    keyed: list[tuple[Destination, _Forwarding]] = []
    for dest, filters in zip(action.destinations, action.path_filters, strict=True):
        redirect = route.redirect
        if filters.redirect is not None:
            redirect = _redirect(filters.redirect, route.path, listener_port)
        rewrite = route.rewrite
        if redirect is not None:
            # A redirect answers by itself: the rewrite would never run.
            rewrite = None
        elif filters.rewrite is not None:
            rewrite = _rewrite(filters.rewrite, route.path)
        keyed.append((dest, (redirect, rewrite)))
    # Groups in the order of their first destination with traffic; a list keeps the output deterministic.
    groups: list[tuple[_Forwarding, list[Destination]]] = []
    for dest, forwarding in keyed:
        if dest.weight > 0 and all(forwarding != f for f, _ in groups):
            groups.append((forwarding, []))
    if not groups:
        # Nothing is forwarded (no destination, or every weight is 0): no backend filter runs.
        return [route]
    for dest, forwarding in keyed:
        for f, members in groups:
            if f == forwarding:
                members.append(dest)
    if len(groups) == 1:
        (redirect, rewrite), members = groups[0]
        return [
            msgspec.structs.replace(route, destinations=tuple(members), redirect=redirect, rewrite=rewrite)
        ]
    total = sum(d.weight for d in action.destinations)
    out: list[Route] = []
    cumulative = 0
    for index, ((redirect, rewrite), members) in enumerate(groups):
        cumulative += sum(d.weight for d in members)
        # Envoy picks among weighted clusters with the same per-request draw as the fractions (modulo
        # the total weight): a total as large as the route's slice of a million would let the slice
        # decide the pick. Weights reduced by their common divisor keep the total small.
        divisor = math.gcd(*(d.weight for d in members))
        out.append(
            msgspec.structs.replace(
                route,
                destinations=tuple(msgspec.structs.replace(d, weight=d.weight // divisor) for d in members),
                redirect=redirect,
                rewrite=rewrite,
                split_millionths=None if index == len(groups) - 1 else cumulative * 1_000_000 // total,
                name=f"{route.name}/split/{index}",
            )
        )
    return out


def _timeouts(
    timeouts: HTTPRouteTimeouts | None, retry: RetryPolicy | None
) -> tuple[int, RetryPolicy | None]:
    """The route timeout and the retry policy with its per-try timeout (the backendRequest timeout)."""
    if timeouts is None:
        return 0, retry
    request = parse_duration(timeouts.request, "timeouts.request") if timeouts.request else 0
    backend = (
        parse_duration(timeouts.backend_request, "timeouts.backendRequest") if timeouts.backend_request else 0
    )
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
        backoff_ms=None if retry.backoff is None else parse_duration(retry.backoff, "retry.backoff"),
    )


def http_route_routes(
    route: HTTPRoute,
    origin: RouteOrigin,
    listener_port: int,
    resolver: BackendResolver,
    warnings: list[str],
    invalid_rules: set[int],
) -> list[tuple[PrecedenceKey, Route]]:
    """Every match of every rule of an HTTPRoute as a model route, with its precedence key. The
    indexes of rules that are not served as written (a match dropped, or answering 500) go to
    `invalid_rules`, the reasons to `warnings`."""
    meta = route.metadata
    out: list[tuple[PrecedenceKey, Route]] = []
    for rule_index, rule in enumerate(route.spec.rules):
        action = rule_action(rule.backend_refs, resolver, warnings, path_filters=True)
        for match_index, match in enumerate(rule.matches or [HTTPRouteMatch()]):
            name = f"{origin.kind.lower()}/{origin.key}/rule/{rule.name or rule_index}/match/{match_index}"
            try:
                path = _path(match.path)
            except GatewayRouteError as exc:
                warnings.append(f"rule {rule_index}: {exc}; the match is not served")
                invalid_rules.add(rule_index)
                continue
            try:
                # An invalid duration makes the rule unservable like an unsupported filter does.
                timeout_ms, retry = _timeouts(rule.timeouts, _retry(rule.retry))
                model = Route(
                    path=path,
                    headers=header_matches(match.headers),
                    query=_query_matches(match.query_params),
                    methods=(match.method.upper(),) if match.method else (),
                    destinations=action.destinations,
                    direct_status=action.direct_status,
                    cluster_not_found_status=action.cluster_not_found_status,
                    timeout_ms=timeout_ms,
                    retry=retry,
                    origin=origin,
                    name=name,
                )
                model = apply_filters(model, rule.filters, resolver, listener_port)
                models = split_by_backend_filters(model, action, listener_port)
            except GatewayRouteError as exc:
                warnings.append(f"rule {rule_index}: {exc}; it answers {RULE_ERROR_STATUS}")
                invalid_rules.add(rule_index)
                models = [Route(path=path, direct_status=RULE_ERROR_STATUS, origin=origin, name=name)]
            # The parts of a split share the match's precedence and stay adjacent, in order.
            for part, model in enumerate(models):
                if model.redirect is not None:
                    # A redirect answers by itself: no destination, nothing to fail.
                    model = msgspec.structs.replace(
                        model, destinations=(), direct_status=0, cluster_not_found_status=0
                    )
                key = precedence_key(
                    model, meta.creation_timestamp, origin.key, rule_index, match_index, part
                )
                out.append((key, model))
    return out
