"""What the Envoy generators make of each feature of the route, service and secret models."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.rbac.v3 import rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as rbac_filter_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.http.custom_response.redirect_policy.v3 import redirect_policy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2
from google.protobuf.message import Message

from tests.support.envoy_config import everything, self_signed
from xdsbus.model.routes import (
    CorsPolicy,
    Destination,
    DownstreamTls,
    ErrorPages,
    HashKind,
    HashPolicy,
    HeaderMatch,
    HeaderMutation,
    HttpsListenerModel,
    LbAlgorithm,
    ListenerModel,
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
    TlsFilterChainModel,
    TlsVersion,
    UpstreamPolicy,
    UpstreamProtocol,
    UpstreamTls,
    UpstreamTlsMode,
    VirtualHostModel,
)
from xdsbus.model.secrets import SecretModel
from xdsbus.model.services import Resolution, ServiceModel, ServicePort, cluster_name, subset_cluster_name
from xdsbus.translate import envoy_clusters, envoy_destinations, envoy_listeners, envoy_routes, envoy_secrets
from xdsbus.translate.envoy_destinations import derived_clusters, destination_cluster, route_destinations
from xdsbus.translate.global_options.envoy_upstream import speaks_http2

ORIGIN = RouteOrigin(created="2024-01-01T00:00:00Z", kind="Ingress", key="ns/name")
WEB = "web.ns.svc.cluster.local"
WEB_CLUSTER = cluster_name(80, WEB)
ROOT = PathMatch(kind=PathKind.PREFIX, value="/")


def route(**kwargs: Any) -> Route:
    kwargs.setdefault("path", ROOT)
    kwargs.setdefault("destinations", (Destination(hostname=WEB, port=80),))
    return Route(origin=ORIGIN, **kwargs)


def unpack(wrapper: any_pb2.Any, cls: type[Message]) -> Any:
    msg = cls()
    assert wrapper.Unpack(msg), wrapper.type_url
    return msg


def hv(name: str, value: str, action: int) -> base_pb2.HeaderValueOption:
    return base_pb2.HeaderValueOption(
        header=base_pb2.HeaderValue(key=name, value=value), append_action=action
    )


ADD = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
SET = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD


# -- matches --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (PathMatch(kind=PathKind.EXACT, value="/a"), rc.RouteMatch(path="/a")),
        (PathMatch(kind=PathKind.PREFIX, value="/"), rc.RouteMatch(prefix="/")),
        (PathMatch(kind=PathKind.PREFIX, value="/a/"), rc.RouteMatch(prefix="/a/")),
        (PathMatch(kind=PathKind.PREFIX, value="/a"), rc.RouteMatch(path_separated_prefix="/a")),
        (
            PathMatch(kind=PathKind.REGEX, value="/a.*"),
            rc.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex="/a.*")),
        ),
    ],
)
def test_path_matches(path: PathMatch, expected: rc.RouteMatch) -> None:
    assert envoy_routes.build_route(route(path=path), 0).match == expected


def test_ignore_case_clears_case_sensitive_and_flags_regexes() -> None:
    prefix = envoy_routes.build_route(
        route(path=PathMatch(kind=PathKind.PREFIX, value="/A"), ignore_case=True), 0
    )
    assert prefix.match.case_sensitive == wrappers_pb2.BoolValue(value=False)
    regex = envoy_routes.build_route(
        route(path=PathMatch(kind=PathKind.REGEX, value="/A+"), ignore_case=True), 0
    )
    assert regex.match.safe_regex.regex == "(?i)/A+"
    assert not regex.match.HasField("case_sensitive")


def test_header_query_and_method_matches() -> None:
    built = envoy_routes.build_route(
        route(
            headers=(
                HeaderMatch(name="a", value="1"),
                HeaderMatch(name="b", kind=StringMatchKind.PREFIX, value="p"),
                HeaderMatch(name="c", kind=StringMatchKind.SUFFIX, value="s"),
                HeaderMatch(name="d", kind=StringMatchKind.CONTAINS, value="c"),
                HeaderMatch(name="e", kind=StringMatchKind.REGEX, value="x+", invert=True),
                HeaderMatch(name="f", kind=StringMatchKind.PRESENT),
                HeaderMatch(name="g", kind=StringMatchKind.PREFIX),
            ),
            query=(QueryMatch(name="q", value="1"), QueryMatch(name="r", kind=StringMatchKind.PRESENT)),
            methods=("GET", "POST"),
        ),
        0,
    )
    sm = string_pb2.StringMatcher
    assert list(built.match.headers) == [
        rc.HeaderMatcher(name="a", string_match=sm(exact="1")),
        rc.HeaderMatcher(name="b", string_match=sm(prefix="p")),
        rc.HeaderMatcher(name="c", string_match=sm(suffix="s")),
        rc.HeaderMatcher(name="d", string_match=sm(contains="c")),
        rc.HeaderMatcher(
            name="e", string_match=sm(safe_regex=regex_pb2.RegexMatcher(regex="x+")), invert_match=True
        ),
        rc.HeaderMatcher(name="f", present_match=True),
        # An empty prefix matches any value: Envoy refuses it, presence means the same.
        rc.HeaderMatcher(name="g", present_match=True),
        rc.HeaderMatcher(
            name=":method", string_match=sm(safe_regex=regex_pb2.RegexMatcher(regex="GET|POST"))
        ),
    ]
    assert list(built.match.query_parameters) == [
        rc.QueryParameterMatcher(name="q", string_match=sm(exact="1")),
        rc.QueryParameterMatcher(name="r", present_match=True),
    ]
    one = envoy_routes.build_route(route(methods=("PUT",)), 0)
    assert list(one.match.headers) == [rc.HeaderMatcher(name=":method", string_match=sm(exact="PUT"))]


# -- actions --------------------------------------------------------------------------------------


def test_route_names() -> None:
    assert envoy_routes.build_route(route(), 3).name == "ingress/ns/name/3"
    assert envoy_routes.build_route(route(name="mine"), 3).name == "mine"


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (301, rc.RedirectAction.MOVED_PERMANENTLY),
        (302, rc.RedirectAction.FOUND),
        (303, rc.RedirectAction.SEE_OTHER),
        (307, rc.RedirectAction.TEMPORARY_REDIRECT),
        (308, rc.RedirectAction.PERMANENT_REDIRECT),
        (300, rc.RedirectAction.FOUND),
    ],
)
def test_redirect_codes(code: int, expected: int) -> None:
    built = envoy_routes.build_route(route(redirect=Redirect(code=code)), 0)
    assert built.redirect.response_code == expected


def test_redirect_fields_and_priority_over_destinations() -> None:
    built = envoy_routes.build_route(
        route(
            redirect=Redirect(scheme="https", host="h", port=8443, prefix="/new", code=301, strip_query=True)
        ),
        0,
    )
    assert not built.HasField("route")
    assert built.redirect == rc.RedirectAction(
        https_redirect=True,
        host_redirect="h",
        port_redirect=8443,
        prefix_rewrite="/new",
        response_code=rc.RedirectAction.MOVED_PERMANENTLY,
        strip_query=True,
    )
    other = envoy_routes.build_route(route(redirect=Redirect(scheme="http", path="/p")), 0)
    assert other.redirect.scheme_redirect == "http"
    assert other.redirect.path_redirect == "/p"


def test_direct_responses() -> None:
    none = envoy_routes.build_route(route(destinations=()), 0)
    assert none.direct_response == rc.DirectResponseAction(status=503)
    teapot = envoy_routes.build_route(route(destinations=(), direct_status=418, direct_body="tea"), 0)
    assert teapot.direct_response == rc.DirectResponseAction(
        status=418, body=base_pb2.DataSource(inline_string="tea")
    )
    zero = envoy_routes.build_route(route(destinations=(Destination(hostname=WEB, port=80, weight=0),)), 0)
    assert zero.direct_response.status == 500


def test_single_destination_uses_cluster_and_no_timeout() -> None:
    built = envoy_routes.build_route(route(), 0)
    assert built.route == rc.RouteAction(cluster=WEB_CLUSTER, timeout=duration_pb2.Duration())
    assert built.route.HasField("timeout"), "an explicit 0s disables Envoy's 15 s default"


def test_weighted_destinations_keep_zero_weights_and_carry_header_mutations() -> None:
    mutation = HeaderMutation(add=(("a", "1"),), set=(("b", "2%"),), remove=("c", ":path"))
    built = envoy_routes.build_route(
        route(
            destinations=(
                Destination(
                    hostname=WEB, port=80, weight=3, request_headers=mutation, response_headers=mutation
                ),
                Destination(hostname="other", port=81, weight=0),
            )
        ),
        0,
    )
    entries = list(built.route.weighted_clusters.clusters)
    assert [(e.name, e.weight.value) for e in entries] == [(WEB_CLUSTER, 3), (cluster_name(81, "other"), 0)]
    assert list(entries[0].request_headers_to_add) == [hv("a", "1", ADD), hv("b", "2%%", SET)]
    assert list(entries[0].request_headers_to_remove) == ["c"]
    assert list(entries[0].response_headers_to_add) == [hv("a", "1", ADD), hv("b", "2%%", SET)]
    assert list(entries[0].response_headers_to_remove) == ["c"]


def test_single_destination_with_header_mutations_goes_through_weighted_clusters() -> None:
    dest = Destination(hostname=WEB, port=80, request_headers=HeaderMutation(set=(("host", "h.example"),)))
    built = envoy_routes.build_route(route(destinations=(dest,)), 0)
    (entry,) = built.route.weighted_clusters.clusters
    assert entry.name == WEB_CLUSTER
    assert entry.host_rewrite_literal == "h.example"
    assert not entry.request_headers_to_add, "Host cannot be set as a header"


def test_route_header_mutations() -> None:
    built = envoy_routes.build_route(
        route(
            request_headers=HeaderMutation(add=(("x", "1"),), set=(("Host", "h"),), remove=("y", "host")),
            response_headers=HeaderMutation(set=(("z", "3"),), remove=("w",)),
        ),
        0,
    )
    assert list(built.request_headers_to_add) == [hv("x", "1", ADD)]
    assert list(built.request_headers_to_remove) == ["y"]
    assert list(built.response_headers_to_add) == [hv("z", "3", SET)]
    assert list(built.response_headers_to_remove) == ["w"]
    assert built.route.host_rewrite_literal == "h"


def test_rewrites() -> None:
    prefix = envoy_routes.build_route(route(rewrite=Rewrite(prefix="/b", host="h")), 0).route
    assert (prefix.prefix_rewrite, prefix.host_rewrite_literal) == ("/b", "h")
    whole = envoy_routes.build_route(route(rewrite=Rewrite(path="/x")), 0).route
    assert whole.regex_rewrite == regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex="^.*$"), substitution="/x"
    )
    regex = envoy_routes.build_route(route(rewrite=Rewrite(regex="^/a/(.*)$", substitution="/\\1")), 0).route
    assert regex.regex_rewrite == regex_pb2.RegexMatchAndSubstitute(
        pattern=regex_pb2.RegexMatcher(regex="^/a/(.*)$"), substitution="/\\1"
    )


def test_timeout_and_retries() -> None:
    action = envoy_routes.build_route(
        route(
            timeout_ms=1500,
            retry=RetryPolicy(
                attempts=2, retry_on=("5xx",), retriable_status_codes=(409,), per_try_timeout_ms=250
            ),
        ),
        0,
    ).route
    assert action.timeout == duration_pb2.Duration(seconds=1, nanos=500_000_000)
    assert action.retry_policy == rc.RetryPolicy(
        retry_on="5xx,retriable-status-codes",
        num_retries=wrappers_pb2.UInt32Value(value=2),
        retriable_status_codes=[409],
        per_try_timeout=duration_pb2.Duration(nanos=250_000_000),
    )


def test_hash_policies() -> None:
    policies = envoy_routes.build_route(
        route(
            hash_policies=(
                HashPolicy(kind=HashKind.HEADER, name="x-user"),
                HashPolicy(kind=HashKind.COOKIE, name="s", cookie_path="/p", generate_cookie=True),
                HashPolicy(kind=HashKind.COOKIE, name="t", cookie_ttl_seconds=60),
                HashPolicy(kind=HashKind.COOKIE, name="u"),
                HashPolicy(kind=HashKind.SOURCE_IP),
                HashPolicy(kind=HashKind.QUERY, name="q"),
            )
        ),
        0,
    ).route.hash_policy
    hp = rc.RouteAction.HashPolicy
    assert list(policies) == [
        hp(header=hp.Header(header_name="x-user")),
        # A session cookie: generated (ttl present) but without Max-Age (ttl 0).
        hp(cookie=hp.Cookie(name="s", path="/p", ttl=duration_pb2.Duration())),
        hp(cookie=hp.Cookie(name="t", ttl=duration_pb2.Duration(seconds=60))),
        hp(cookie=hp.Cookie(name="u")),
        hp(connection_properties=hp.ConnectionProperties(source_ip=True)),
        hp(query_parameter=hp.QueryParameter(name="q")),
    ]
    assert policies[1].cookie.HasField("ttl")
    assert not policies[3].cookie.HasField("ttl")


def test_mirrors() -> None:
    policy = UpstreamPolicy(lb=LbAlgorithm.RANDOM)
    mirrors = envoy_routes.build_route(
        route(
            mirrors=(
                Mirror(destination=Destination(hostname="m", port=80)),
                Mirror(destination=Destination(hostname="m", port=80, policy=policy), millionths=1000),
            )
        ),
        0,
    ).route.request_mirror_policies
    assert mirrors[0] == rc.RouteAction.RequestMirrorPolicy(cluster=cluster_name(80, "m"))
    assert mirrors[1].cluster == destination_cluster(Destination(hostname="m", port=80, policy=policy))
    assert mirrors[1].runtime_fraction == base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=1000, denominator=percent_pb2.FractionalPercent.MILLION
        )
    )


# -- per-filter configs ---------------------------------------------------------------------------


def test_cors_per_route_config() -> None:
    built = envoy_routes.build_route(
        route(
            cors=CorsPolicy(
                allow_origins=((StringMatchKind.EXACT, "https://a"), (StringMatchKind.PRESENT, "")),
                allow_methods=("GET", "PUT"),
                allow_headers=("x-a", "x-b"),
                expose_headers=("x-c",),
                allow_credentials=True,
                max_age_seconds=30,
            )
        ),
        0,
    )
    policy = unpack(built.typed_per_filter_config[envoy_listeners.CORS_FILTER], cors_pb2.CorsPolicy)
    assert policy == cors_pb2.CorsPolicy(
        allow_origin_string_match=[
            string_pb2.StringMatcher(exact="https://a"),
            string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=".*")),
        ],
        allow_methods="GET,PUT",
        allow_headers="x-a,x-b",
        expose_headers="x-c",
        max_age="30",
        allow_credentials=wrappers_pb2.BoolValue(value=True),
        # Preflights from origins the policy refuses are answered by Envoy, not forwarded.
        forward_not_matching_preflights=wrappers_pb2.BoolValue(value=False),
    )


def test_source_ranges_become_an_rbac_allow_policy() -> None:
    built = envoy_routes.build_route(
        route(allow_source_ranges=("10.1.2.3/8", "192.168.0.7", "2001:db8::/32")), 0
    )
    config = unpack(built.typed_per_filter_config[envoy_listeners.RBAC_FILTER], rbac_filter_pb2.RBACPerRoute)
    rules = config.rbac.rules
    assert rules.action == rbac_pb2.RBAC.ALLOW
    policy = rules.policies["allow-source-ranges"]
    assert list(policy.permissions) == [rbac_pb2.Permission(any=True)]

    def cidr(prefix: str, length: int) -> rbac_pb2.Principal:
        return rbac_pb2.Principal(
            remote_ip=address_pb2.CidrRange(
                address_prefix=prefix, prefix_len=wrappers_pb2.UInt32Value(value=length)
            )
        )

    assert list(policy.principals) == [cidr("10.0.0.0", 8), cidr("192.168.0.7", 32), cidr("2001:db8::", 32)]


def test_bad_source_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="not-an-ip"):
        envoy_routes.build_route(route(allow_source_ranges=("not-an-ip",)), 0)


def test_error_pages_redirect_per_code_to_a_first_route() -> None:
    errors = Destination(hostname="errors", port=80)
    model = VirtualHostModel(
        name="vh",
        domains=("a",),
        routes=(route(error_pages=ErrorPages(codes=(503, 404), destination=errors)), route(name="plain")),
    )
    vh = envoy_routes.build_virtual_host(model)
    marker = cluster_name(80, "errors")
    first = vh.routes[0]
    assert first.name == f"error-page/{marker}"
    assert list(first.match.headers) == [
        rc.HeaderMatcher(
            name=envoy_routes.ERROR_PAGE_HEADER, string_match=string_pb2.StringMatcher(exact=marker)
        )
    ]
    assert first.route.cluster == marker
    assert list(first.request_headers_to_remove) == [envoy_routes.ERROR_PAGE_HEADER]
    assert [r.name for r in vh.routes[1:]] == ["ingress/ns/name/0", "plain"]

    config = unpack(
        vh.routes[1].typed_per_filter_config[envoy_listeners.CUSTOM_RESPONSE_FILTER],
        custom_response_pb2.CustomResponse,
    )
    actions = config.custom_response_matcher.matcher_tree.exact_match_map.map
    assert sorted(actions) == ["404", "503"]
    policy = unpack(actions["503"].action.typed_config, redirect_policy_pb2.RedirectPolicy)
    assert policy.redirect_action == rc.RedirectAction(path_redirect="/", strip_query=True)
    assert policy.status_code.value == 503
    assert [(h.header.key, h.header.value) for h in policy.request_headers_to_add] == [
        (envoy_routes.ERROR_PAGE_HEADER, marker),
        (envoy_routes.ERROR_CODE_HEADER, "503"),
    ]
    assert envoy_listeners.CUSTOM_RESPONSE_FILTER not in vh.routes[2].typed_per_filter_config


def test_error_pages_of_a_local_answer_add_no_route() -> None:
    pages = ErrorPages(codes=(404,), destination=Destination(hostname="errors", port=80))
    vh = envoy_routes.build_virtual_host(
        VirtualHostModel(name="vh", domains=("a",), routes=(route(destinations=(), error_pages=pages),))
    )
    assert len(vh.routes) == 1
    assert not vh.routes[0].typed_per_filter_config


def test_route_config_assembly_equals_building_the_message() -> None:
    vhs = [
        envoy_routes.build_virtual_host(
            VirtualHostModel(name=n, domains=(n,), routes=(route(cors=CorsPolicy()),))
        )
        for n in ("a", "b")
    ]
    spliced = envoy_routes.assemble_route_config(
        "http.80", [vh.SerializeToString(deterministic=True) for vh in vhs]
    )
    built = route_pb2.RouteConfiguration(
        name="http.80", virtual_hosts=vhs, ignore_port_in_host_matching=True
    ).SerializeToString(deterministic=True)
    assert spliced == built
    framed = [envoy_routes.frame_virtual_host(vh.SerializeToString(deterministic=True)) for vh in vhs]
    assert envoy_routes.assemble_framed_route_config("http.80", framed) == built


# -- destinations and clusters --------------------------------------------------------------------

SERVICE = ServiceModel(hostname=WEB, ports=(ServicePort(number=80), ServicePort(number=90, protocol="GRPC")))
LOOKUP = {WEB: SERVICE}.get


def test_destination_cluster_names() -> None:
    plain = Destination(hostname=WEB, port=80)
    assert destination_cluster(plain) == WEB_CLUSTER
    hashed = Destination(hostname=WEB, port=80, policy=UpstreamPolicy(lb=LbAlgorithm.MAGLEV))
    name = destination_cluster(hashed)
    subset = name.split("|")[2]
    assert subset.startswith("p-") and len(subset) == 12
    assert name == subset_cluster_name(80, subset, WEB)
    assert destination_cluster(Destination(hostname=WEB, port=80, weight=5, policy=hashed.policy)) == name
    other = Destination(hostname=WEB, port=80, policy=UpstreamPolicy(lb=LbAlgorithm.RANDOM))
    assert destination_cluster(other) != name
    fb = destination_cluster(Destination(hostname=WEB, port=80, fallback=Destination(hostname="b", port=80)))
    assert fb.startswith("outbound|80|fb-") and fb.endswith(f"|{WEB}")
    # A fallback to itself is no fallback.
    assert destination_cluster(Destination(hostname=WEB, port=80, fallback=plain)) == WEB_CLUSTER


def test_plain_destination_needs_no_extra_cluster() -> None:
    assert derived_clusters(Destination(hostname=WEB, port=80), LOOKUP) == []


def test_policy_cluster_copies_the_service_cluster() -> None:
    dest = Destination(
        hostname=WEB,
        port=80,
        policy=UpstreamPolicy(lb=LbAlgorithm.LEAST_REQUEST, protocol=UpstreamProtocol.HTTP2),
    )
    ((name, cluster),) = derived_clusters(dest, LOOKUP)
    assert name == cluster.name == destination_cluster(dest)
    assert cluster.type == cluster_pb2.Cluster.EDS
    assert cluster.eds_cluster_config.service_name == WEB_CLUSTER, "shares the service's endpoints"
    assert cluster.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    options = unpack(
        cluster.typed_extension_protocol_options[envoy_clusters.HTTP_PROTOCOL_OPTIONS],
        http_protocol_options_pb2.HttpProtocolOptions,
    )
    assert options.explicit_http_config.HasField("http2_protocol_options")


def test_policy_cluster_can_force_http1_on_a_grpc_port() -> None:
    dest = Destination(hostname=WEB, port=90, policy=UpstreamPolicy(protocol=UpstreamProtocol.HTTP1))
    ((_, cluster),) = derived_clusters(dest, LOOKUP)
    assert not speaks_http2(cluster)


def test_policy_cluster_of_a_dns_service_copies_its_addresses() -> None:
    dns = ServiceModel(
        hostname="ext",
        ports=(ServicePort(number=443, target=8443),),
        resolution=Resolution.STRICT_DNS,
        dns_name="x.io",
    )
    dest = Destination(hostname="ext", port=443, policy=UpstreamPolicy(lb=LbAlgorithm.RING_HASH))
    ((name, cluster),) = derived_clusters(dest, {"ext": dns}.get)
    assert cluster.type == cluster_pb2.Cluster.STRICT_DNS
    assert cluster.load_assignment.cluster_name == name
    address = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address
    assert (address.address, address.port_value) == ("x.io", 8443)
    assert cluster.lb_policy == cluster_pb2.Cluster.RING_HASH


def test_policy_cluster_without_service_is_left_out() -> None:
    dest = Destination(hostname="nowhere", port=80, policy=UpstreamPolicy(lb=LbAlgorithm.RANDOM))
    assert derived_clusters(dest, LOOKUP) == []
    assert derived_clusters(Destination(hostname=WEB, port=81, policy=dest.policy), LOOKUP) == []


def test_upstream_tls() -> None:
    tls = UpstreamTls(
        mode=UpstreamTlsMode.MUTUAL,
        client_secret="client",
        ca_secret="ca",
        sni="b.example",
        verify=True,
        subject_alt_names=("b.example", "c.example"),
    )
    dest = Destination(hostname=WEB, port=90, policy=UpstreamPolicy(tls=tls))
    ((_, cluster),) = derived_clusters(dest, LOOKUP)
    assert cluster.transport_socket.name == "envoy.transport_sockets.tls"
    context = unpack(cluster.transport_socket.typed_config, tls_pb2.UpstreamTlsContext)
    assert context.sni == "b.example"
    common = context.common_tls_context
    assert list(common.alpn_protocols) == ["h2"], "the port speaks gRPC"
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["client"]
    assert common.tls_certificate_sds_secret_configs[0].sds_config.HasField("ads")
    combined = common.combined_validation_context
    assert combined.validation_context_sds_secret_config.name == "ca"
    sans = combined.default_validation_context.match_typed_subject_alt_names
    assert [s.matcher.exact for s in sans] == ["b.example", "c.example"]


def test_upstream_tls_without_verification_or_ca() -> None:
    plain = envoy_destinations.upstream_tls_context(UpstreamTls(sni="s", ca_secret="ca"), http2=False)
    assert plain == tls_pb2.UpstreamTlsContext(sni="s", common_tls_context=tls_pb2.CommonTlsContext())
    system = envoy_destinations.upstream_tls_context(UpstreamTls(sni="s", verify=True), http2=False)
    context = system.common_tls_context.validation_context
    assert context.trusted_ca.filename == envoy_destinations.SYSTEM_CA_BUNDLE
    assert [s.matcher.exact for s in context.match_typed_subject_alt_names] == ["s"]


def test_fallback_chain_becomes_one_aggregate_cluster() -> None:
    policy = UpstreamPolicy(lb=LbAlgorithm.MAGLEV)
    third = Destination(hostname="c", port=80)
    second = Destination(hostname=WEB, port=80, policy=policy, fallback=third)
    dest = Destination(hostname=WEB, port=90, fallback=second)
    clusters = derived_clusters(dest, LOOKUP)
    names = [name for name, _ in clusters]
    policy_cluster = subset_cluster_name(80, envoy_destinations.policy_subset(policy), WEB)
    assert names == [policy_cluster, destination_cluster(dest)]
    aggregate = clusters[1][1]
    assert aggregate.lb_policy == cluster_pb2.Cluster.CLUSTER_PROVIDED
    assert aggregate.cluster_type.name == "envoy.clusters.aggregate"
    config = unpack(aggregate.cluster_type.typed_config, aggregate_pb2.ClusterConfig)
    assert list(config.clusters) == [cluster_name(90, WEB), policy_cluster, cluster_name(80, "c")]


def test_route_destinations_lists_backends_mirrors_and_error_pages() -> None:
    a, b, c = (Destination(hostname=h, port=80) for h in "abc")
    listed = route_destinations(
        route(
            destinations=(a,),
            mirrors=(Mirror(destination=b),),
            error_pages=ErrorPages(codes=(404,), destination=c),
        )
    )
    assert listed == [a, b, c]


@pytest.mark.parametrize(
    ("protocol", "http2"), [("HTTP", False), ("HTTP2", True), ("GRPC", True), ("UDP", False)]
)
def test_service_cluster_speaks_http2_for_h2_ports(protocol: str, http2: bool) -> None:
    svc = ServiceModel(hostname="s", ports=(ServicePort(number=80, protocol=protocol),))
    cluster = envoy_clusters.build_cluster(svc, svc.ports[0])
    assert speaks_http2(cluster) is http2


# -- listeners ------------------------------------------------------------------------------------


def manager(chain: Any) -> hcm.HttpConnectionManager:
    (network_filter,) = chain.filters
    return unpack(network_filter.typed_config, hcm.HttpConnectionManager)


def test_http_listener_filters_and_websocket() -> None:
    listener = envoy_listeners.build_http_listener(
        ListenerModel(name="0.0.0.0_80", port=80, route_config="http.80")
    )
    assert listener.address.socket_address.port_value == 80
    mgr = manager(listener.filter_chains[0])
    assert mgr.rds.route_config_name == "http.80"
    # The compressor is there by default: higress-config's gzip is on unless turned off.
    assert [f.name for f in mgr.http_filters] == [
        "envoy.filters.http.compressor",
        "envoy.filters.http.cors",
        "envoy.filters.http.rbac",
        "envoy.filters.http.custom_response",
        "envoy.filters.http.local_ratelimit",
        "envoy.filters.http.router",
    ]
    rbac = unpack(mgr.http_filters[2].typed_config, rbac_filter_pb2.RBAC)
    assert not rbac.HasField("rules"), "no rules: enforces nothing"
    assert [u.upgrade_type for u in mgr.upgrade_configs] == ["websocket"]


def test_https_listener_chains_by_sni() -> None:
    model = HttpsListenerModel(
        name="0.0.0.0_443",
        port=443,
        chains=(
            TlsFilterChainModel(
                server_names=("z.example", "*.b.example"),
                tls=DownstreamTls(
                    cert_secret="kubernetes://ns/z",
                    client_ca_secret="kubernetes://ns/z-cacert",
                    min_version=TlsVersion.TLS1_2,
                    max_version=TlsVersion.TLS1_3,
                    cipher_suites=("ECDHE-RSA-AES128-GCM-SHA256",),
                ),
                route_config="https.443.z",
            ),
            TlsFilterChainModel(
                server_names=("a.example",),
                tls=DownstreamTls(cert_secret="kubernetes://ns/a"),
                route_config="https.443.a",
            ),
            # Claims a name an earlier chain has: Envoy would refuse the listener.
            TlsFilterChainModel(
                server_names=("a.example",),
                tls=DownstreamTls(cert_secret="kubernetes://ns/x"),
                route_config="https.443.x",
            ),
        ),
    )
    listener = envoy_listeners.build_https_listener(model)
    assert [f.name for f in listener.listener_filters] == ["envoy.filters.listener.tls_inspector"]
    chains = list(listener.filter_chains)
    assert [list(c.filter_chain_match.server_names) for c in chains] == [
        ["*.b.example", "z.example"],
        ["a.example"],
    ]
    assert [manager(c).rds.route_config_name for c in chains] == ["https.443.z", "https.443.a"]
    first = unpack(chains[0].transport_socket.typed_config, tls_pb2.DownstreamTlsContext)
    common = first.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["kubernetes://ns/z"]
    assert common.validation_context_sds_secret_config.name == "kubernetes://ns/z-cacert"
    assert first.require_client_certificate.value is True
    assert common.tls_params.tls_minimum_protocol_version == common.tls_params.TLSv1_2
    assert common.tls_params.tls_maximum_protocol_version == common.tls_params.TLSv1_3
    assert list(common.tls_params.cipher_suites) == ["ECDHE-RSA-AES128-GCM-SHA256"]
    assert list(common.alpn_protocols) == ["h2", "http/1.1"]
    second = unpack(chains[1].transport_socket.typed_config, tls_pb2.DownstreamTlsContext)
    assert not second.HasField("require_client_certificate")
    assert not second.common_tls_context.HasField("tls_params")
    assert envoy_listeners.https_route_config_name(443, "a") == "https.443.a"


def test_names_stay_importable_from_envoy_routes() -> None:
    assert envoy_routes.listener_name(80) == "0.0.0.0_80"
    assert envoy_routes.http_route_config_name(80) == "http.80"
    assert envoy_routes.build_http_listener is envoy_listeners.build_http_listener


# -- secrets --------------------------------------------------------------------------------------


def test_secrets() -> None:
    cert = self_signed("a", ("a",))
    tls = envoy_secrets.build_secret(SecretModel(name="kubernetes://ns/a", certificate=cert))
    assert tls.name == "kubernetes://ns/a"
    assert tls.tls_certificate.certificate_chain.inline_bytes == cert.cert_chain
    assert tls.tls_certificate.private_key.inline_bytes == cert.private_key
    ca = envoy_secrets.build_secret(SecretModel(name="kubernetes://ns/a-cacert", trusted_ca=cert.cert_chain))
    assert ca.validation_context.trusted_ca.inline_bytes == cert.cert_chain
    with pytest.raises(ValueError, match="exactly one"):
        envoy_secrets.build_secret(SecretModel(name="empty"))


# -- determinism ----------------------------------------------------------------------------------


def test_generation_is_deterministic() -> None:
    first, second = everything(80, 443), everything(80, 443)
    for kind in ("clusters", "listeners", "routes"):
        a, b = getattr(first, kind), getattr(second, kind)
        assert list(a) == list(b)
        for name in a:
            assert a[name].SerializeToString(deterministic=True) == b[name].SerializeToString(
                deterministic=True
            )
