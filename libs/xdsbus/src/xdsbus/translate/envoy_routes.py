"""RouteConfigurations, VirtualHosts and Routes from the route model.

A RouteConfiguration is assembled from virtual hosts serialized one by one and cached: one Ingress change
re-serializes one virtual host, not the ten thousand around it.

Features that live in HTTP filters (CORS, source ranges, error pages) are per-route configs of the filters
every connection manager carries (see `envoy_listeners`).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import msgspec
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.http.custom_response.redirect_policy.v3 import redirect_policy_pb2
from envoy.type.matcher.v3 import regex_pb2, status_code_input_pb2, string_pb2
from envoy.type.v3 import http_status_pb2, percent_pb2, token_bucket_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from xds.core.v3 import extension_pb2
from xds.type.matcher.v3 import matcher_pb2

from xdsbus.contract.wire import field
from xdsbus.model.routes import (
    CorsPolicy,
    Destination,
    ErrorPages,
    HashKind,
    HashPolicy,
    HeaderMatch,
    HeaderMutation,
    LocalRateLimit,
    PathKind,
    QueryMatch,
    Redirect,
    RetryPolicy,
    Route,
    StringMatchKind,
    VirtualHostModel,
)
from xdsbus.translate.envoy_common import pack
from xdsbus.translate.envoy_destinations import destination_cluster
from xdsbus.translate.envoy_listeners import (
    CORS_FILTER,
    CUSTOM_RESPONSE_FILTER,
    LOCAL_RATE_LIMIT_FILTER,
    LOCAL_RATE_LIMIT_STAT_PREFIX,
    RBAC_FILTER,
)

# Re-exported: the listener builders moved to envoy_listeners, callers still import them from here.
from xdsbus.translate.envoy_listeners import build_http_listener as build_http_listener
from xdsbus.translate.envoy_listeners import http_route_config_name as http_route_config_name
from xdsbus.translate.envoy_listeners import listener_name as listener_name
from xdsbus.translate.http2rpc import apply_dubbo_route

_VIRTUAL_HOSTS_FIELD = route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER

# A request the custom_response filter re-issues for an error page carries this header, naming the error
# page cluster; the virtual host's first routes match it (Higress/ingress-nginx send error pages to a
# backend the same way). The backend also gets the original status code, as ingress-nginx's X-Code.
ERROR_PAGE_HEADER = "x-xdsbus-error-page"
ERROR_CODE_HEADER = "x-code"

_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}

_CLUSTER_NOT_FOUND_CODES = {
    404: rc.RouteAction.NOT_FOUND,
    500: rc.RouteAction.INTERNAL_SERVER_ERROR,
    503: rc.RouteAction.SERVICE_UNAVAILABLE,
}

_APPEND = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD

# Retry backoff: the longest wait between tries, as a multiple of the shortest (Envoy's default).
_BACKOFF_CAP_FACTOR = 10

# Every destination weighted 0: Envoy refuses such a weighted_clusters, Gateway API answers 500.
_NO_WEIGHT_STATUS = 500
_NO_DESTINATION_STATUS = 503


# -- matching -------------------------------------------------------------------------------------


def _string_matcher(kind: StringMatchKind, value: str) -> string_pb2.StringMatcher | None:
    """The StringMatcher for a condition, or None when it only asks for presence.

    Envoy refuses an empty prefix, suffix or substring; each matches any value, so they mean presence.
    """
    if kind is StringMatchKind.PRESENT:
        return None
    if kind is StringMatchKind.EXACT:
        return string_pb2.StringMatcher(exact=value)
    if kind is StringMatchKind.REGEX:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=value))
    if not value:
        return None
    if kind is StringMatchKind.PREFIX:
        return string_pb2.StringMatcher(prefix=value)
    if kind is StringMatchKind.SUFFIX:
        return string_pb2.StringMatcher(suffix=value)
    return string_pb2.StringMatcher(contains=value)


def _header_matcher(match: HeaderMatch) -> rc.HeaderMatcher:
    out = rc.HeaderMatcher(name=match.name, invert_match=match.invert)
    matcher = _string_matcher(match.kind, match.value)
    if matcher is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(matcher)
    return out


def _query_matcher(match: QueryMatch) -> rc.QueryParameterMatcher:
    out = rc.QueryParameterMatcher(name=match.name)
    matcher = _string_matcher(match.kind, match.value)
    if matcher is None:
        out.present_match = True
    else:
        out.string_match.CopyFrom(matcher)
    return out


def _method_matcher(methods: tuple[str, ...]) -> rc.HeaderMatcher:
    if len(methods) == 1:
        return rc.HeaderMatcher(name=":method", string_match=string_pb2.StringMatcher(exact=methods[0]))
    # Envoy's safe_regex matches the whole value, so the alternation needs no anchors.
    pattern = "|".join(re.escape(m) for m in methods)
    return rc.HeaderMatcher(
        name=":method",
        string_match=string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=pattern)),
    )


def _fill_route_match(match: rc.RouteMatch, route: Route) -> None:
    # Filled in place, as every per-route message here: with upb, building a message and copying it
    # into its parent costs about three times filling the parent's own field (bench builder_full_build).
    path = route.path
    match.SetInParent()
    if path.kind is PathKind.EXACT:
        match.path = path.value
    elif path.kind is PathKind.REGEX:
        # case_sensitive does not apply to regexes; RE2's flag does.
        match.safe_regex.regex = ("(?i)" if route.ignore_case else "") + path.value
    elif path.value == "/" or path.value.endswith("/"):
        match.prefix = path.value
    else:
        # Kubernetes Prefix semantics: /foo matches /foo and /foo/bar, not /foobar.
        match.path_separated_prefix = path.value
    if route.ignore_case and path.kind is not PathKind.REGEX:
        match.case_sensitive.value = False
    match.headers.extend(_header_matcher(h) for h in route.headers)
    if route.methods:
        match.headers.append(_method_matcher(route.methods))
    match.query_parameters.extend(_query_matcher(q) for q in route.query)


def _millionths(millionths: int) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(
        numerator=max(millionths, 0), denominator=percent_pb2.FractionalPercent.MILLION
    )


def _split_fraction(match: rc.RouteMatch, millionths: int, name: str) -> None:
    """Make `match` take the requests whose per-request random draw is below `millionths` of a million
    (see `Route.split_millionths`). The runtime key, which Envoy reads before the default, is derived from
    the route's name: stable across builds and distinct per route, so an operator could shift one part."""
    match.runtime_fraction.default_value.CopyFrom(_millionths(millionths))
    match.runtime_fraction.runtime_key = f"xdsbus.split.{name}"


# -- header mutations -----------------------------------------------------------------------------


def _modifiable(name: str) -> bool:
    # Envoy refuses configs that add, set or remove pseudo-headers or Host; a Host change is a rewrite.
    return not name.startswith(":") and name.lower() != "host"


def _is_host(name: str) -> bool:
    return name.lower() in ("host", ":authority")


def _header_options(mutation: HeaderMutation) -> list[base_pb2.HeaderValueOption]:
    options = []
    for pairs, action in ((mutation.add, _APPEND), (mutation.set, _OVERWRITE)):
        for name, value in pairs:
            if _modifiable(name):
                # Envoy reads `%...%` in header values as substitutions; the model's values are literal.
                header = base_pb2.HeaderValue(key=name, value=value.replace("%", "%%"))
                options.append(base_pb2.HeaderValueOption(header=header, append_action=action))
    return options


def _removals(mutation: HeaderMutation) -> list[str]:
    return [name for name in mutation.remove if _modifiable(name)]


def _host_override(mutation: HeaderMutation | None) -> str:
    """The Host a request mutation sets, which Envoy applies as a host rewrite."""
    if mutation is None:
        return ""
    hosts = [value for name, value in (*mutation.add, *mutation.set) if _is_host(name)]
    return hosts[-1] if hosts else ""


def _mutate(
    target: rc.Route | rc.WeightedCluster.ClusterWeight,
    request: HeaderMutation | None,
    response: HeaderMutation | None,
) -> None:
    if request is not None:
        target.request_headers_to_add.extend(_header_options(request))
        target.request_headers_to_remove.extend(_removals(request))
    if response is not None:
        target.response_headers_to_add.extend(_header_options(response))
        target.response_headers_to_remove.extend(_removals(response))


# -- actions --------------------------------------------------------------------------------------


def _redirect(redirect: Redirect) -> rc.RedirectAction:
    out = rc.RedirectAction(
        host_redirect=redirect.host,
        port_redirect=redirect.port,
        strip_query=redirect.strip_query,
        # Other 3xx codes have no Envoy equivalent; 302 is the generic temporary redirect.
        response_code=_REDIRECT_CODES.get(redirect.code, rc.RedirectAction.FOUND),
    )
    if redirect.scheme == "https":
        out.https_redirect = True
    elif redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.path:
        out.path_redirect = redirect.path
    elif redirect.prefix:
        out.prefix_rewrite = redirect.prefix
    elif redirect.regex:
        out.regex_rewrite.pattern.regex = redirect.regex
        out.regex_rewrite.substitution = redirect.substitution
    return out


def _has_header_mutations(dest: Destination) -> bool:
    return dest.request_headers is not None or dest.response_headers is not None


def _forward(action: rc.RouteAction, destinations: tuple[Destination, ...]) -> None:
    """Point `action` at the destinations' clusters.

    One destination without header mutations uses `cluster`; anything else goes through
    weighted_clusters, whose entries carry per-destination header mutations (a single destination's
    entry too, so they never mix with the route's own). Weight-0 entries stay: Envoy accepts them as long
    as some weight is positive, and they keep the route's shape stable while a canary is at 0.
    """
    if len(destinations) == 1 and not _has_header_mutations(destinations[0]):
        action.cluster = destination_cluster(destinations[0])
        return
    for dest in destinations:
        entry = action.weighted_clusters.clusters.add(
            name=destination_cluster(dest), weight=wrappers_pb2.UInt32Value(value=dest.weight)
        )
        _mutate(entry, dest.request_headers, dest.response_headers)
        host = _host_override(dest.request_headers)
        if host:
            entry.host_rewrite_literal = host


def _duration_ms(ms: int) -> duration_pb2.Duration:
    return duration_pb2.Duration(seconds=ms // 1000, nanos=(ms % 1000) * 1_000_000)


def _retry_policy(retry: RetryPolicy) -> rc.RetryPolicy:
    conditions = list(retry.retry_on)
    # Envoy retries on listed status codes only with this condition present.
    if retry.retriable_status_codes and "retriable-status-codes" not in conditions:
        conditions.append("retriable-status-codes")
    out = rc.RetryPolicy(
        retry_on=",".join(conditions),
        num_retries=wrappers_pb2.UInt32Value(value=retry.attempts),
        retriable_status_codes=list(retry.retriable_status_codes),
    )
    if retry.per_try_timeout_ms:
        out.per_try_timeout.CopyFrom(_duration_ms(retry.per_try_timeout_ms))
    if retry.backoff_ms is not None:
        # Envoy refuses a zero interval. The cap is the one Envoy applies when none is given (ten times
        # the base), written out so that the route says how long a retry may wait.
        base = max(retry.backoff_ms, 1)
        out.retry_back_off.base_interval.CopyFrom(_duration_ms(base))
        out.retry_back_off.max_interval.CopyFrom(_duration_ms(base * _BACKOFF_CAP_FACTOR))
    return out


def _hash_policy(policy: HashPolicy) -> rc.RouteAction.HashPolicy:
    out = rc.RouteAction.HashPolicy()
    if policy.kind is HashKind.HEADER:
        out.header.header_name = policy.name
    elif policy.kind is HashKind.COOKIE:
        out.cookie.name = policy.name
        out.cookie.path = policy.cookie_path
        if policy.cookie_ttl_seconds or policy.generate_cookie:
            # Envoy generates a missing cookie only when a TTL is set; an explicit 0s gives a session
            # cookie.
            out.cookie.ttl.CopyFrom(duration_pb2.Duration(seconds=policy.cookie_ttl_seconds))
    elif policy.kind is HashKind.SOURCE_IP:
        out.connection_properties.source_ip = True
    else:
        out.query_parameter.name = policy.name
    return out


def _fill_route_action(action: rc.RouteAction, route: Route, destinations: tuple[Destination, ...]) -> None:
    action.SetInParent()
    _forward(action, destinations)
    rewrite = route.rewrite
    host = _host_override(route.request_headers)
    if rewrite is not None:
        if rewrite.prefix:
            action.prefix_rewrite = rewrite.prefix
        elif rewrite.path:
            # The whole path (not the query) becomes `path`; `\` starts a group reference in a
            # substitution, so literal ones are doubled.
            action.regex_rewrite.pattern.regex = "^.*$"
            action.regex_rewrite.substitution = rewrite.path.replace("\\", "\\\\")
        elif rewrite.regex:
            action.regex_rewrite.pattern.regex = rewrite.regex
            action.regex_rewrite.substitution = rewrite.substitution
        host = rewrite.host or host
    if host:
        action.host_rewrite_literal = host
    # 0 turns Envoy's 15 s default off, as Istio does: Kubernetes users expect no route timeout.
    timeout = action.timeout
    timeout.SetInParent()
    timeout.seconds, timeout.nanos = route.timeout_ms // 1000, (route.timeout_ms % 1000) * 1_000_000
    if route.retry is not None:
        action.retry_policy.CopyFrom(_retry_policy(route.retry))
    if route.cluster_not_found_status in _CLUSTER_NOT_FOUND_CODES:
        action.cluster_not_found_response_code = _CLUSTER_NOT_FOUND_CODES[route.cluster_not_found_status]
    action.hash_policy.extend(_hash_policy(p) for p in route.hash_policies)
    for mirror in route.mirrors:
        policy = action.request_mirror_policies.add(cluster=destination_cluster(mirror.destination))
        if mirror.millionths < 1_000_000:
            policy.runtime_fraction.default_value.CopyFrom(_millionths(mirror.millionths))


# -- per-filter configs ---------------------------------------------------------------------------


def _cors(cors: CorsPolicy) -> cors_pb2.CorsPolicy:
    out = cors_pb2.CorsPolicy(
        allow_origin_string_match=[
            _string_matcher(kind, value)
            or string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".*"))
            for kind, value in cors.allow_origins
        ],
        allow_methods=",".join(cors.allow_methods),
        allow_headers=",".join(cors.allow_headers),
        expose_headers=",".join(cors.expose_headers),
    )
    # A preflight from an origin the policy does not allow is answered here, without CORS headers:
    # forwarding it would let the backend answer for an origin the route refused.
    out.forward_not_matching_preflights.value = False
    if cors.max_age_seconds:
        out.max_age = str(cors.max_age_seconds)
    if cors.allow_credentials:
        out.allow_credentials.value = True
    return out


def _cidr(source: str) -> address_pb2.CidrRange:
    network = ipaddress.ip_network(source, strict=False)
    return address_pb2.CidrRange(
        address_prefix=str(network.network_address),
        prefix_len=wrappers_pb2.UInt32Value(value=network.prefixlen),
    )


def _source_ranges(ranges: tuple[str, ...]) -> rbac_filter_pb2.RBACPerRoute:
    """Allow the listed client CIDRs (the address the connection manager trusts, `remote_ip`); the RBAC
    filter answers 403 to everyone else."""
    policy = rbac_pb2.Policy(
        permissions=[rbac_pb2.Permission(any=True)],
        principals=[rbac_pb2.Principal(remote_ip=_cidr(r)) for r in ranges],
    )
    return rbac_filter_pb2.RBACPerRoute(
        rbac=rbac_filter_pb2.RBAC(
            rules=rbac_pb2.RBAC(action=rbac_pb2.RBAC.ALLOW, policies={"allow-source-ranges": policy})
        )
    )


def _error_pages(
    pages: ErrorPages, extra_headers: tuple[tuple[str, str], ...]
) -> custom_response_pb2.CustomResponse:
    """Per status code, re-issue the request as `GET /` to the error page route and keep the status;
    `extra_headers` (values are Envoy substitution formats) are added to the re-issued request."""
    marker = destination_cluster(pages.destination)
    actions = {}
    for code in sorted(set(pages.codes)):
        policy = redirect_policy_pb2.RedirectPolicy(
            redirect_action=rc.RedirectAction(path_redirect="/", strip_query=True),
            status_code=wrappers_pb2.UInt32Value(value=code),
            request_headers_to_add=[
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=ERROR_PAGE_HEADER, value=marker.replace("%", "%%")),
                    append_action=_OVERWRITE,
                ),
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=ERROR_CODE_HEADER, value=str(code)),
                    append_action=_OVERWRITE,
                ),
                *(
                    base_pb2.HeaderValueOption(
                        header=base_pb2.HeaderValue(key=key, value=value), append_action=_OVERWRITE
                    )
                    for key, value in extra_headers
                ),
            ],
        )
        actions[str(code)] = matcher_pb2.Matcher.OnMatch(
            action=extension_pb2.TypedExtensionConfig(name=f"error-page-{code}", typed_config=pack(policy))
        )
    tree = matcher_pb2.Matcher.MatcherTree(
        input=extension_pb2.TypedExtensionConfig(
            name="status-code", typed_config=pack(status_code_input_pb2.HttpResponseStatusCodeMatchInput())
        ),
        exact_match_map=matcher_pb2.Matcher.MatcherTree.MatchMap(map=actions),
    )
    return custom_response_pb2.CustomResponse(custom_response_matcher=matcher_pb2.Matcher(matcher_tree=tree))


def _runtime_percent(percent: int, runtime_key: str) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=percent, denominator=percent_pb2.FractionalPercent.HUNDRED
        ),
        runtime_key=runtime_key,
    )


def local_rate_limit(limit: LocalRateLimit) -> local_rate_limit_pb2.LocalRateLimit:
    """The per-route bucket as Higress's Istio fork writes its `local-rate-limit` route filter
    (docs/higress.md §1.14): enabled and enforced for every request (Envoy's default is 0%: off), and
    `x-local-rate-limit: true` on the answers it limits."""
    return local_rate_limit_pb2.LocalRateLimit(
        stat_prefix=LOCAL_RATE_LIMIT_STAT_PREFIX,
        status=http_status_pb2.HttpStatus(code=limit.status),
        token_bucket=token_bucket_pb2.TokenBucket(
            max_tokens=limit.max_tokens,
            tokens_per_fill=wrappers_pb2.UInt32Value(value=limit.tokens_per_fill),
            fill_interval=duration_pb2.Duration(seconds=limit.fill_seconds),
        ),
        filter_enabled=_runtime_percent(100, "local_rate_limit_enabled"),
        filter_enforced=_runtime_percent(100, "local_rate_limit_enforced"),
        # Istio writes the deprecated `append: false`, which is this action.
        response_headers_to_add=[
            base_pb2.HeaderValueOption(
                header=base_pb2.HeaderValue(key="x-local-rate-limit", value="true"), append_action=_OVERWRITE
            )
        ],
    )


def _error_page_route(dest: Destination) -> rc.Route:
    """The route error page requests take: first in the virtual host, matched by the marker header."""
    cluster = destination_cluster(dest)
    out = rc.Route(
        name=f"error-page/{cluster}",
        match=rc.RouteMatch(
            prefix="/",
            headers=[
                rc.HeaderMatcher(name=ERROR_PAGE_HEADER, string_match=string_pb2.StringMatcher(exact=cluster))
            ],
        ),
        request_headers_to_remove=[ERROR_PAGE_HEADER],
    )
    # Its weight means nothing here, and a 0 would make a one-entry weighted_clusters Envoy refuses.
    _forward(out.route, (msgspec.structs.replace(dest, weight=1),))
    out.route.timeout.CopyFrom(_duration_ms(0))
    return out


# -- routes and virtual hosts ---------------------------------------------------------------------


def _route_name(route: Route, index: int) -> str:
    """The route's own name, or `<kind>/<namespace/name>/<index>` from its origin."""
    return route.name or f"{route.origin.kind.lower()}/{route.origin.key}/{index}"


def build_route(route: Route, index: int, error_page_headers: tuple[tuple[str, str], ...] = ()) -> rc.Route:
    """One Envoy route: redirect, forward, or a direct answer when there is no destination.

    Error pages also need the route `build_virtual_host` adds for them; their re-issued requests carry
    `error_page_headers` (a split route table's, translate/route_tables.py).
    """
    out = rc.Route(name=_route_name(route, index))
    _fill_route_match(out.match, route)
    if route.split_millionths is not None:
        _split_fraction(out.match, route.split_millionths, out.name)
    if route.redirect is not None:
        out.redirect.CopyFrom(_redirect(route.redirect))
    elif not route.destinations:
        out.direct_response.status = route.direct_status or _NO_DESTINATION_STATUS
        if route.direct_body:
            out.direct_response.body.inline_string = route.direct_body
    elif not any(d.weight > 0 for d in route.destinations):
        out.direct_response.status = _NO_WEIGHT_STATUS
    else:
        _fill_route_action(out.route, route, route.destinations)
    _mutate(out, route.request_headers, route.response_headers)
    if route.cors is not None:
        out.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(_cors(route.cors)))
    if route.allow_source_ranges:
        out.typed_per_filter_config[RBAC_FILTER].CopyFrom(pack(_source_ranges(route.allow_source_ranges)))
    if route.dubbo is not None and out.HasField("route"):
        apply_dubbo_route(out, route.dubbo)
    if route.rate_limit is not None:
        out.typed_per_filter_config[LOCAL_RATE_LIMIT_FILTER].CopyFrom(
            pack(local_rate_limit(route.rate_limit))
        )
    if route.error_pages is not None and out.HasField("route"):
        out.typed_per_filter_config[CUSTOM_RESPONSE_FILTER].CopyFrom(
            pack(_error_pages(route.error_pages, error_page_headers))
        )
    return out


def build_virtual_host(
    model: VirtualHostModel, error_page_headers: tuple[tuple[str, str], ...] = ()
) -> rc.VirtualHost:
    """A virtual host with its routes in the order the model gives, after one route per error page
    backend its forwarding routes use (the re-issued error page request must not match them)."""
    routes = [build_route(route, i, error_page_headers) for i, route in enumerate(model.routes)]
    error_backends = {
        destination_cluster(route.error_pages.destination): route.error_pages.destination
        for route, built in zip(model.routes, routes, strict=True)
        if route.error_pages is not None and CUSTOM_RESPONSE_FILTER in built.typed_per_filter_config
    }
    first = [_error_page_route(error_backends[name]) for name in sorted(error_backends)]
    return rc.VirtualHost(name=model.name, domains=list(model.domains), routes=first + routes)


def assemble_route_config(name: str, virtual_hosts: Iterable[bytes]) -> bytes:
    """A serialized RouteConfiguration from pre-serialized VirtualHosts.

    Equal, byte for byte, to building the message and serializing it deterministically: fields are
    written in field-number order, name (1), virtual_hosts (2), then ignore_port_in_host_matching (14).
    """
    return assemble_framed_route_config(name, [frame_virtual_host(vh) for vh in virtual_hosts])


# Virtual hosts match on the host alone (`Host: example.com:8080` finds `example.com`) while the backend
# still receives the header as the client sent it, which Gateway API requires.
_ROUTE_CONFIG_TAIL = route_pb2.RouteConfiguration(ignore_port_in_host_matching=True).SerializeToString(
    deterministic=True
)


def frame_virtual_host(virtual_host: bytes) -> bytes:
    """A serialized VirtualHost as one `virtual_hosts` field of a RouteConfiguration (tag, length, bytes),
    ready for assemble_framed_route_config."""
    return field(_VIRTUAL_HOSTS_FIELD, virtual_host)


def assemble_framed_route_config(
    name: str, framed_virtual_hosts: Iterable[bytes], *, remove_request_headers: tuple[str, ...] = ()
) -> bytes:
    """assemble_route_config from virtual hosts already framed by frame_virtual_host: a join, so that a
    route configuration of many hosts is spliced without re-framing each of them (20k hosts: ~40 ms of
    framing per change). `remove_request_headers` are never forwarded upstream (request_headers_to_remove,
    field 8, written before field 14)."""
    head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
    tail = _ROUTE_CONFIG_TAIL
    if remove_request_headers:
        tail = route_pb2.RouteConfiguration(
            request_headers_to_remove=list(remove_request_headers), ignore_port_in_host_matching=True
        ).SerializeToString(deterministic=True)
    return head + b"".join(framed_virtual_hosts) + tail
