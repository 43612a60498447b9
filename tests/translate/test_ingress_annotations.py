"""Higress Ingress annotations: prefix precedence, every family's model, invalid values as problems."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.translate.ingress_objects import H, N, annotated, only_route, services, web
from xdsbus.model.routes import (
    CorsPolicy,
    Destination,
    ErrorPages,
    HashKind,
    HashPolicy,
    HeaderMatch,
    HeaderMutation,
    LbAlgorithm,
    Mirror,
    QueryMatch,
    Redirect,
    RetryPolicy,
    StringMatchKind,
    TlsVersion,
    UpstreamPolicy,
    UpstreamProtocol,
    UpstreamTls,
    UpstreamTlsMode,
)
from xdsbus.translate.ingress_annotations import CanarySpec, HttpsRedirect, parse_annotations
from xdsbus.translate.ingress_annotations.re2 import ENVOY_MAX_PROGRAM_SIZE, re2_problem
from xdsbus.translate.ingress_annotations.reader import normalize

# -- prefixes and problems ---------------------------------------------------------------------


def test_nginx_prefix_wins_over_higress() -> None:
    p = parse_annotations({N + "proxy-next-upstream-tries": "5", H + "proxy-next-upstream-tries": "7"})
    assert p.retry is not None and p.retry.attempts == 5
    assert p.problems == ()


def test_higress_prefix_alone_is_read() -> None:
    p = parse_annotations({H + "proxy-next-upstream-tries": "7"})
    assert p.retry is not None and p.retry.attempts == 7


def test_invalid_nginx_value_is_a_problem_and_the_higress_one_is_used() -> None:
    p = parse_annotations({N + "canary": "true", N + "canary-weight": "abc", H + "canary-weight": "30"})
    assert p.canary == CanarySpec(weight=30)
    assert p.problems == (f'annotation {N}canary-weight: "abc" is not an integer',)


def test_higress_only_keys_ignore_the_nginx_prefix() -> None:
    p = parse_annotations(
        {N + "timeout": "5", N + "request-header-control-add": "x-a 1", N + "rewrite-path": "/b"}
    )
    assert p.timeout_ms == 0
    assert p.header_control.request is None
    assert p.rewrite is None
    # Higress ignores them silently; a user sees why they do nothing (ignored.py).
    assert p.problems == tuple(
        f'annotation {N}{key}: "{value}" has no effect: Higress reads it only as higress.io/{key}'
        for key, value in (("request-header-control-add", "x-a 1"), ("rewrite-path", "/b"), ("timeout", "5"))
    )
    assert parse_annotations({H + "timeout": "5"}).timeout_ms == 5000


def test_annotations_nothing_reads_are_reported_and_change_nothing_else() -> None:
    p = parse_annotations({N + "configuration-snippet": "more_set_headers x;", "example.com/x": "1"})
    assert msgspec.structs.replace(p, problems=()) == parse_annotations({})
    assert p.problems == (
        f'annotation {N}configuration-snippet: "more_set_headers x;" has no effect: Higress does not run '
        "nginx configuration snippets (use a WasmPlugin)",
    )


def test_empty_value_is_a_problem() -> None:
    p = parse_annotations({N + "upstream-vhost": "  "})
    assert p.rewrite is None
    assert p.problems == (f'annotation {N}upstream-vhost: "  " is empty',)


def test_auth_type_was_removed() -> None:
    p = parse_annotations({N + "auth-type": "basic", N + "auth-secret": "s"})
    assert len(p.problems) == 2
    assert p.problems[0].startswith(f'annotation {N}auth-secret: "s" is not supported')
    assert p.problems[1].startswith(f'annotation {N}auth-type: "basic" is not supported')
    assert all("Higress 2.0" in q and "basic-auth Wasm plugin" in q for q in p.problems)


def test_values_are_trimmed_line_by_line() -> None:
    assert normalize("  a \n  b  \n") == "a\nb"


def test_bad_value_leaves_the_rest_applied() -> None:
    t = annotated({N + "proxy-next-upstream-tries": "many", H + "timeout": "3", N + "enable-cors": "true"})
    route = only_route(t)
    assert route.timeout_ms == 3000
    assert route.cors is not None
    assert route.retry == RetryPolicy(attempts=3, retry_on=("5xx",))
    assert t.warnings == [f'annotation {N}proxy-next-upstream-tries: "many" is not an integer']


# -- canary ------------------------------------------------------------------------------------


def test_canary_precedence() -> None:
    base = {N + "canary": "true", N + "canary-weight": "20"}
    assert parse_annotations(base).canary == CanarySpec(weight=20)
    assert parse_annotations({**base, N + "canary-weight-total": "50"}).canary == CanarySpec(
        weight=20, weight_total=50
    )
    with_cookie = {**base, N + "canary-by-cookie": "beta"}
    assert parse_annotations(with_cookie).canary == CanarySpec(cookie="beta")
    with_header = {**with_cookie, N + "canary-by-header": "X-Canary"}
    assert parse_annotations(with_header).canary == CanarySpec(header="X-Canary", cookie="beta")
    with_pattern = {**with_header, N + "canary-by-header-pattern": "^v2"}
    assert parse_annotations(with_pattern).canary == CanarySpec(header="X-Canary", header_pattern="^v2")
    with_value = {**with_pattern, N + "canary-by-header-value": "v2"}
    assert parse_annotations(with_value).canary == CanarySpec(header="X-Canary", header_value="v2")


def test_canary_false_or_absent_is_a_normal_ingress() -> None:
    assert parse_annotations({N + "canary": "false", N + "canary-weight": "50"}).canary is None
    assert parse_annotations({N + "canary-weight": "50"}).canary is None
    p = parse_annotations({N + "canary": "yes"})
    assert p.canary is None and p.problems == (
        f'annotation {N}canary: "yes" is not a boolean (true or false)',
    )


def test_canary_header_matches() -> None:
    assert CanarySpec(header="X-Canary").header_match() == HeaderMatch(name="x-canary", value="always")
    assert CanarySpec(header="X-C", header_value="v2").header_match() == HeaderMatch(
        name="x-c", kind=StringMatchKind.REGEX, value="always|v2"
    )
    assert CanarySpec(header="X-C", header_pattern="v2").header_match() == HeaderMatch(
        name="x-c", kind=StringMatchKind.REGEX, value=".*v2.*"
    )
    assert CanarySpec(cookie="beta").header_match() == HeaderMatch(
        name="cookie", kind=StringMatchKind.REGEX, value=r"^(.*?;\s*)?(beta=always)(;.*)?$"
    )
    assert CanarySpec(weight=10).header_match() is None


def test_canary_invalid_values() -> None:
    p = parse_annotations(
        {
            N + "canary": "true",
            N + "canary-by-header-value": "v2",
            N + "canary-weight": "-1",
            N + "canary-weight-total": "0",
        }
    )
    assert p.canary == CanarySpec()
    assert p.problems == (
        f'annotation {N}canary-by-header-value: "v2" has no effect without canary-by-header',
        f'annotation {N}canary-weight: "-1" must be at least 0',
        f'annotation {N}canary-weight-total: "0" must be at least 1',
    )
    bad = parse_annotations(
        {N + "canary": "true", N + "canary-by-header": "x", N + "canary-by-header-pattern": "(?=a)"}
    )
    assert bad.canary == CanarySpec(header="x")
    assert bad.problems == (
        f"annotation {N}canary-by-header-pattern: \"(?=a)\" makes a header regex '.*(?=a).*' "
        "that is not a valid RE2 regular expression (invalid perl operator: (?=)",
    )


# -- rewrite -----------------------------------------------------------------------------------


def test_rewrite_target_converts_nginx_groups() -> None:
    p = parse_annotations({N + "rewrite-target": "/$1/$2"})
    assert p.rewrite is not None and p.rewrite.target == "/\\1/\\2"
    assert parse_annotations({N + "rewrite-target": "/a$b"}).rewrite.target == "/a$b"  # type: ignore[union-attr]


def test_rewrite_path_wins_over_rewrite_target() -> None:
    p = parse_annotations({N + "rewrite-target": "/x", H + "rewrite-path": "/y"})
    assert p.rewrite is not None and p.rewrite.path == "/y" and p.rewrite.target == ""
    assert p.problems == (
        f'annotation {N}rewrite-target: "/x" is ignored: higress.io/rewrite-path takes priority',
    )


def test_rewrite_applied_to_routes() -> None:
    route = only_route(annotated({H + "rewrite-path": "/bar", N + "upstream-vhost": "backend.internal"}))
    assert route.rewrite is not None
    assert (route.rewrite.prefix, route.rewrite.host) == ("/bar", "backend.internal")
    route = only_route(annotated({H + "rewrite-path": "/"}))
    assert route.rewrite is not None and (route.rewrite.regex, route.rewrite.substitution) == ("^/foo/?", "/")
    bad = annotated({H + "rewrite-path": "bar"})
    assert only_route(bad).rewrite is None
    assert bad.warnings == [f"annotation {H}rewrite-path: \"bar\" must start with '/'"]


# -- redirect ----------------------------------------------------------------------------------


def test_temporal_redirect_wins() -> None:
    p = parse_annotations(
        {
            N + "temporal-redirect": "https://t.example.com/x?q=1",
            N + "permanent-redirect": "https://p.example.com",
        }
    )
    assert p.redirect is not None
    assert p.redirect.redirect == Redirect(scheme="https", host="t.example.com", path="/x?q=1", code=302)


def test_permanent_redirect_code() -> None:
    p = parse_annotations(
        {N + "permanent-redirect": "http://p.example.com:8080", N + "permanent-redirect-code": "308"}
    )
    assert p.redirect is not None
    assert p.redirect.redirect == Redirect(scheme="http", host="p.example.com", port=8080, code=308)
    p = parse_annotations(
        {N + "permanent-redirect": "http://p.example.com", N + "permanent-redirect-code": "404"}
    )
    assert p.redirect is not None and p.redirect.redirect is not None and p.redirect.redirect.code == 301
    assert p.problems == (f'annotation {N}permanent-redirect-code: "404" is out of range 300-308',)


def test_bad_redirect_url_is_a_problem() -> None:
    p = parse_annotations(
        {N + "permanent-redirect": "ftp://x.example.com", N + "temporal-redirect": "/relative"}
    )
    assert p.redirect is None
    assert p.problems == (
        f'annotation {N}temporal-redirect: "/relative" is not an http:// or https:// URL',
        f'annotation {N}permanent-redirect: "ftp://x.example.com" is not an http:// or https:// URL',
    )


def test_ssl_redirects() -> None:
    p = parse_annotations({N + "ssl-redirect": "true"})
    assert p.redirect is not None and p.redirect.https is HttpsRedirect.IF_TLS
    p = parse_annotations({N + "force-ssl-redirect": "true", N + "ssl-redirect": "false"})
    assert p.redirect is not None and p.redirect.https is HttpsRedirect.ALWAYS
    assert parse_annotations({N + "ssl-redirect": "false"}).redirect is None
    t = annotated({N + "ssl-redirect": "true"})
    assert t.routes[0].https_redirect is HttpsRedirect.IF_TLS
    assert t.routes[0].route.redirect is None


# -- CORS --------------------------------------------------------------------------------------


def test_cors_defaults() -> None:
    route = only_route(annotated({N + "enable-cors": "true"}))
    assert route.cors == CorsPolicy(
        allow_origins=((StringMatchKind.REGEX, ".*"),),
        allow_methods=("GET", "PUT", "POST", "DELETE", "PATCH", "OPTIONS"),
        allow_headers=(
            "DNT",
            "X-CustomHeader",
            "Keep-Alive",
            "User-Agent",
            "X-Requested-With",
            "If-Modified-Since",
            "Cache-Control",
            "Content-Type",
            "Authorization",
        ),
        allow_credentials=True,
        max_age_seconds=1728000,
    )


def test_cors_values() -> None:
    p = parse_annotations(
        {
            N + "enable-cors": "true",
            N + "cors-allow-origin": "https://a.example.com, https://*.foo.com",
            N + "cors-allow-methods": "GET,POST",
            N + "cors-expose-headers": "X-Total",
            N + "cors-allow-credentials": "false",
            N + "cors-max-age": "60",
        }
    )
    assert p.cors is not None
    assert p.cors.allow_origins == (
        (StringMatchKind.EXACT, "https://a.example.com"),
        (StringMatchKind.REGEX, r".*\.foo\.com"),
    )
    assert p.cors.allow_methods == ("GET", "POST")
    assert p.cors.expose_headers == ("X-Total",)
    assert (p.cors.allow_credentials, p.cors.max_age_seconds) == (False, 60)


def test_cors_off_and_invalid() -> None:
    assert parse_annotations({N + "enable-cors": "false", N + "cors-max-age": "x"}).cors is None
    p = parse_annotations(
        {N + "enable-cors": "true", N + "cors-allow-origin": "https://a.*.com", N + "cors-max-age": "-5"}
    )
    assert p.cors is not None and p.cors.allow_origins == ((StringMatchKind.REGEX, ".*"),)
    assert p.cors.max_age_seconds == 1728000
    assert len(p.problems) == 2 and "wildcard" in p.problems[0] and "at least 0" in p.problems[1]


# -- retry and timeout -------------------------------------------------------------------------


def test_retry_mapping() -> None:
    p = parse_annotations(
        {
            N + "proxy-next-upstream": "error timeout http_503 http_429 non_idempotent",
            N + "proxy-next-upstream-tries": "2",
            N + "proxy-next-upstream-timeout": "5",
        }
    )
    assert p.retry == RetryPolicy(
        attempts=2,
        retry_on=("5xx", "reset", "connect-failure", "retriable-status-codes"),
        retriable_status_codes=(503, 429),
        per_try_timeout_ms=5000,
    )
    assert parse_annotations({N + "proxy-next-upstream": "invalid_header,http_502"}).retry == RetryPolicy(
        attempts=3, retry_on=("5xx", "retriable-status-codes"), retriable_status_codes=(502,)
    )


def test_retry_off_and_defaults() -> None:
    assert parse_annotations({N + "proxy-next-upstream": "off"}).retry == RetryPolicy(attempts=0, retry_on=())
    assert parse_annotations({N + "proxy-next-upstream-timeout": "1"}).retry == RetryPolicy(
        attempts=3, retry_on=("5xx",), per_try_timeout_ms=1000
    )
    assert parse_annotations({}).retry is None


def test_retry_unknown_condition() -> None:
    p = parse_annotations({N + "proxy-next-upstream": "error sometimes"})
    assert p.retry == RetryPolicy(attempts=3, retry_on=("5xx",))
    assert p.problems[0].startswith(
        f'annotation {N}proxy-next-upstream: "error sometimes" has unknown condition(s) sometimes'
    )


def test_timeout() -> None:
    assert only_route(annotated({H + "timeout": "30"})).timeout_ms == 30_000
    t = annotated({H + "timeout": "-1"})
    assert only_route(t).timeout_ms == 0 and t.warnings == [
        f'annotation {H}timeout: "-1" is out of range 0-604800'
    ]
    # Beyond Envoy's Duration once in milliseconds: reported, not passed on to break the route table.
    huge = annotated({H + "timeout": "999999999999", N + "proxy-next-upstream-tries": "5000000000"})
    assert only_route(huge).timeout_ms == 0
    assert huge.warnings == [
        f'annotation {N}proxy-next-upstream-tries: "5000000000" is out of range 0-100',
        f'annotation {H}timeout: "999999999999" is out of range 0-604800',
    ]


# -- load balancing ----------------------------------------------------------------------------


def test_cookie_affinity_wins() -> None:
    route = only_route(
        annotated(
            {
                N + "affinity": "cookie",
                N + "session-cookie-name": "route",
                N + "session-cookie-expires": "60",
                N + "session-cookie-max-age": "120",
                N + "upstream-hash-by": "$host",
                N + "load-balance": "random",
            }
        )
    )
    assert route.hash_policies == (
        HashPolicy(
            kind=HashKind.COOKIE, name="route", cookie_path="/", cookie_ttl_seconds=120, generate_cookie=True
        ),
    )
    assert route.destinations[0].policy.lb is LbAlgorithm.RING_HASH


def test_cookie_affinity_defaults() -> None:
    p = parse_annotations({N + "session-cookie-path": "/app"})
    assert p.load_balance is not None
    assert p.load_balance.hash_policies == (
        HashPolicy(kind=HashKind.COOKIE, name="INGRESSCOOKIE", cookie_path="/app", generate_cookie=True),
    )


def test_upstream_hash_by() -> None:
    def hashed(value: str) -> tuple[HashPolicy, ...]:
        p = parse_annotations({N + "upstream-hash-by": value})
        assert p.load_balance is not None and p.load_balance.lb is LbAlgorithm.RING_HASH
        return p.load_balance.hash_policies

    assert hashed("$request_uri") == (HashPolicy(kind=HashKind.HEADER, name=":path"),)
    assert hashed("$host") == (HashPolicy(kind=HashKind.HEADER, name=":authority"),)
    assert hashed("$remote_addr") == (HashPolicy(kind=HashKind.SOURCE_IP),)
    assert hashed("$http_x_user_id") == (HashPolicy(kind=HashKind.HEADER, name="x-user-id"),)
    assert hashed("$arg_uid") == (HashPolicy(kind=HashKind.QUERY, name="uid"),)
    p = parse_annotations({N + "upstream-hash-by": "$cookie_x", N + "load-balance": "least_conn"})
    assert p.load_balance is not None and p.load_balance.lb is LbAlgorithm.LEAST_REQUEST
    assert p.problems and "is not one of $request_uri" in p.problems[0]


def test_load_balance() -> None:
    route = only_route(annotated({N + "load-balance": "RANDOM"}))
    assert route.destinations[0].policy == UpstreamPolicy(lb=LbAlgorithm.RANDOM)
    assert route.hash_policies == ()
    t = annotated({N + "load-balance": "ewma"})
    assert only_route(t).destinations[0].policy == UpstreamPolicy()
    assert "is not a load balancer" in t.warnings[0]


# -- IP access ---------------------------------------------------------------------------------


def test_whitelist_source_range() -> None:
    route = only_route(
        annotated({N + "whitelist-source-range": "10.0.0.0/8, 192.168.1.7, 2001:db8::1, 172.16.5.4/12"})
    )
    assert route.allow_source_ranges == ("10.0.0.0/8", "192.168.1.7/32", "2001:db8::1/128", "172.16.0.0/12")


def test_whitelist_with_bad_entries() -> None:
    t = annotated({N + "whitelist-source-range": "10.0.0.0/8, 10.0.0.300, nope"})
    assert only_route(t).allow_source_ranges == ("10.0.0.0/8",)
    assert t.warnings == [
        f'annotation {N}whitelist-source-range: "10.0.0.0/8, 10.0.0.300, nope" has invalid IP ranges '
        "10.0.0.300, nope: they are left out"
    ]


# -- header control ----------------------------------------------------------------------------


def test_header_control() -> None:
    route = only_route(
        annotated(
            {
                H + "request-header-control-add": 'x-a  "one two"\nx-b 2',
                H + "request-header-control-update": "x-c 3",
                H + "request-header-control-remove": "x-d, x-e",
                H + "response-header-control-update": "server edge",
            }
        )
    )
    assert route.request_headers == HeaderMutation(
        add=(("x-a", "one two"), ("x-b", "2")), set=(("x-c", "3"),), remove=("x-d", "x-e")
    )
    assert route.response_headers == HeaderMutation(set=(("server", "edge"),))


def test_bad_header_line() -> None:
    t = annotated(
        {H + "request-header-control-add": "x-a 1\nlonely", H + "request-header-control-remove": "x-b"}
    )
    assert only_route(t).request_headers == HeaderMutation(remove=("x-b",))
    assert t.warnings == [
        f'annotation {H}request-header-control-add: "x-a 1\\nlonely" '
        "has line \"lonely\" that is not '<header> <value>'"
    ]


# -- mirror ------------------------------------------------------------------------------------


def test_mirror_service_default_port_and_percentage() -> None:
    known = services(("shadow", (9000, 9100)))
    t = annotated({N + "mirror-target-service": "shadow", N + "mirror-percentage": "25"}, known)
    assert only_route(t).mirrors == (Mirror(destination=web(9000, name="shadow"), millionths=250_000),)
    assert "shadow.default.svc.cluster.local" in t.services


def test_mirror_service_with_namespace_and_port() -> None:
    t = annotated(
        {N + "mirror-target-service": "other/shadow:9100"}, services(("shadow", (9000,)), namespace="other")
    )
    shadow = Destination(hostname="shadow.other.svc.cluster.local", port=9100)
    assert only_route(t).mirrors == (Mirror(destination=shadow),)


def test_mirror_missing_service_is_a_problem() -> None:
    t = annotated({N + "mirror-target-service": "ghost", N + "mirror-percentage": "100"})
    assert only_route(t).mirrors == ()
    assert t.warnings == [
        f'annotation {N}mirror-target-service: "ghost" names service default/ghost, which is not found'
    ]
    assert "ghost.default.svc.cluster.local" in t.services


def test_mirror_fqdn_wins() -> None:
    t = annotated({N + "mirror-target-service": "ghost", N + "mirror-target-fqdn": "Shadow.Example.com"})
    assert only_route(t).mirrors[0].destination.hostname == "Shadow.Example.com"
    assert only_route(t).mirrors[0].destination.port == 80
    assert t.warnings == []


# -- upstream protocol and TLS -----------------------------------------------------------------


def test_backend_protocols() -> None:
    def policy(value: str) -> UpstreamPolicy:
        return only_route(annotated({N + "backend-protocol": value})).destinations[0].policy

    assert policy("HTTP") == UpstreamPolicy()
    assert policy("grpc") == UpstreamPolicy(protocol=UpstreamProtocol.HTTP2)
    assert policy("HTTP2") == UpstreamPolicy(protocol=UpstreamProtocol.HTTP2)
    assert policy("HTTPS") == UpstreamPolicy(tls=UpstreamTls(mode=UpstreamTlsMode.SIMPLE, verify=False))
    assert policy("GRPCS") == UpstreamPolicy(protocol=UpstreamProtocol.HTTP2, tls=UpstreamTls())
    t = annotated({N + "backend-protocol": "AJP"})
    assert t.warnings == [
        f'annotation {N}backend-protocol: "AJP" is not a backend protocol (HTTP, HTTP2, HTTPS, GRPC, GRPCS)'
    ]


def test_proxy_ssl_secret_mutual_tls() -> None:
    p = parse_annotations(
        {
            N + "backend-protocol": "HTTPS",
            N + "proxy-ssl-secret": "certs/client",
            N + "proxy-ssl-verify": "on",
            N + "proxy-ssl-name": "api.internal",
            N + "proxy-ssl-server-name": "on",
        },
        namespace="shop",
    )
    assert p.upstream is not None
    assert p.upstream.tls == UpstreamTls(
        mode=UpstreamTlsMode.MUTUAL,
        client_secret="kubernetes://certs/client",
        ca_secret="kubernetes://certs/client-cacert",
        verify=True,
        sni="api.internal",
    )
    p = parse_annotations(
        {
            N + "backend-protocol": "HTTPS",
            N + "proxy-ssl-secret": "client",
            N + "proxy-ssl-name": "api.internal",
        },
        namespace="shop",
    )
    assert p.upstream is not None
    assert p.upstream.tls == UpstreamTls(
        mode=UpstreamTlsMode.MUTUAL, client_secret="kubernetes://shop/client"
    )


def test_proxy_ssl_secret_needs_https() -> None:
    p = parse_annotations({N + "proxy-ssl-secret": "client", N + "proxy-ssl-verify": "maybe"})
    assert p.upstream is None
    assert p.problems == (
        f'annotation {N}proxy-ssl-verify: "maybe" is neither "on" nor "off"',
        f'annotation {N}proxy-ssl-secret: "client" has no effect: '
        "backend-protocol is HTTP, not HTTPS or GRPCS",
    )


# -- downstream TLS (parsing; per-host application in test_ingress_tls) ------------------------


def test_downstream_tls_values() -> None:
    p = parse_annotations(
        {
            N + "ssl-cipher": "ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA:RC4-MD5",
            N + "tls-min-protocol-version": "TLSv1.2",
            N + "tls-max-protocol-version": "tlsv1.3",
        }
    )
    assert p.downstream_tls is not None
    assert p.downstream_tls.cipher_suites == ()
    assert (p.downstream_tls.min_version, p.downstream_tls.max_version) == (
        TlsVersion.TLS1_2,
        TlsVersion.TLS1_3,
    )
    assert p.problems == (
        f'annotation {N}ssl-cipher: "ECDHE-RSA-AES128-GCM-SHA256:AES256-SHA:RC4-MD5" has cipher suite(s) '
        "Envoy does not support: RC4-MD5",
    )
    p = parse_annotations(
        {N + "tls-min-protocol-version": "TLSv1.3", N + "tls-max-protocol-version": "TLSv1.2"}
    )
    assert p.downstream_tls is not None and p.downstream_tls.max_version is TlsVersion.AUTO
    assert "lower than tls-min-protocol-version" in p.problems[0]


# -- fallback and error pages ------------------------------------------------------------------


def test_default_backend_annotation_and_error_pages() -> None:
    known = services(("errors", (8080, 9090)))
    route = only_route(
        annotated({N + "default-backend": "errors", N + "custom-http-errors": "404, 503"}, known)
    )
    fallback = web(8080, name="errors")
    assert route.destinations == (web(fallback=fallback),)
    assert route.error_pages == ErrorPages(codes=(404, 503), destination=fallback)


def test_default_backend_annotation_problems() -> None:
    t = annotated({N + "default-backend": "ghost", N + "custom-http-errors": "404"})
    assert only_route(t).destinations == (web(),) and only_route(t).error_pages is None
    assert t.warnings == [
        f'annotation {N}default-backend: "ghost" names service default/ghost, which is not found'
    ]
    t = annotated({N + "custom-http-errors": "404,200,abc"})
    assert t.warnings == [
        f'annotation {N}custom-http-errors: "404,200,abc" has 200, abc, not HTTP error codes (400-599)'
    ]
    t = annotated({N + "custom-http-errors": "404"})
    assert t.warnings == [f'annotation {N}custom-http-errors: "404" has no effect without default-backend']


# -- match annotations -------------------------------------------------------------------------


def test_match_annotations() -> None:
    route = only_route(
        annotated(
            {
                H + "match-method": "get  POST get",
                H + "exact-match-header-X-Env": "prod",
                H + "regex-match-header-user-agent": ".*Mobile.*",
                H + "prefix-match-pseudo-header-authority": "api.",
                H + "exact-match-query-lang": "en",
                N + "exact-match-header-ignored": "x",
                N + "ignore-path-case": "true",
            }
        )
    )
    assert route.methods == ("GET", "POST")
    assert route.headers == (
        HeaderMatch(name=":authority", kind=StringMatchKind.PREFIX, value="api."),
        HeaderMatch(name="user-agent", kind=StringMatchKind.REGEX, value=".*Mobile.*"),
        HeaderMatch(name="x-env", kind=StringMatchKind.EXACT, value="prod"),
    )
    assert route.query == (QueryMatch(name="lang", value="en"),)
    assert route.ignore_case is True


def test_match_annotation_problems() -> None:
    t = annotated(
        {
            H + "match-method": "GET FETCH",
            H + "regex-match-header-x": "(a)\\1",
            H + "prefix-match-query-q": "",
            H + "exact-match-header-": "v",
        }
    )
    route = only_route(t)
    assert (route.methods, route.headers, route.query) == ((), (), ())
    assert t.warnings == [
        f'annotation {H}match-method: "GET FETCH" has unknown method(s) FETCH '
        "(known: GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH)",
        f'annotation {H}exact-match-header-: "v" '
        "does not name a header ('' in the key is not a header name)",
        f'annotation {H}prefix-match-query-q: "" is empty (a prefix match needs a prefix)',
        f'annotation {H}regex-match-header-x: "(a)\\\\1" '
        "is not a valid RE2 regular expression (invalid escape sequence: \\1)",
    ]


# -- RE2 (Envoy's check) ---------------------------------------------------------------------

# Envoy refuses it: RE2 program size 246 > 100 (docs/design.md §6).
OVERSIZED_REGEX = "/api/[a-z0-9]{1,64}/items/[0-9]{1,20}"


def test_re2_check() -> None:
    for good in (
        r"/api/v[0-9]+/.*",
        r"(?i)abc",
        r"x\z",
        r"[[:alpha:]]+",
        r"a{2,10}",
        r"[]a]",
        r"(?P<n>x)",
        r"(?<n>x)",
    ):
        assert re2_problem(good) is None, good
    for bad in (r"(?=x)", r"(?<!x)y", r"(a)\1", r"(?>a)", r"a*+", r"x\Z", r"a{1001}", r"(", r"(?P=n)"):
        assert (re2_problem(bad) or "").startswith("is not a valid RE2 regular expression ("), bad


def test_re2_program_size_over_envoys_limit() -> None:
    assert re2_problem(OVERSIZED_REGEX) == (
        f"has RE2 program size 246, over Envoy's limit of {ENVOY_MAX_PROGRAM_SIZE} (re2.max_program_size)"
    )
    # Valid syntax, but a Unicode class compiles to far more than Envoy allows.
    assert "program size" in (re2_problem(r"\pL+") or "")


def test_oversized_header_regex_annotation_is_dropped() -> None:
    t = annotated({H + "regex-match-header-x": OVERSIZED_REGEX, H + "regex-match-query-q": "v[0-9]+"})
    route = only_route(t)
    assert route.headers == ()
    assert route.query == (QueryMatch(name="q", kind=StringMatchKind.REGEX, value="v[0-9]+"),)
    assert t.warnings == [
        f'annotation {H}regex-match-header-x: "{OVERSIZED_REGEX}" '
        f"has RE2 program size 246, over Envoy's limit of {ENVOY_MAX_PROGRAM_SIZE} (re2.max_program_size)"
    ]


# -- destination -------------------------------------------------------------------------------


def test_destination_lines() -> None:
    p = parse_annotations({H + "destination": "80% svc.DEFAULT-GROUP.public.nacos:8080\n20% b.static v1"})
    assert p.destination is not None
    lines = [(d.host, d.port, d.weight, d.subset) for d in p.destination.lines]
    assert lines == [("svc.DEFAULT-GROUP.public.nacos", 8080, 80, ""), ("b.static", 80, 20, "v1")]
    assert p.problems == (
        f'annotation {H}destination: "80% svc.DEFAULT-GROUP.public.nacos:8080\\n20% b.static v1" '
        "names subset 'v1': subsets are not supported, ignored",
    )
    p = parse_annotations({H + "destination": "x% a.static"})
    assert p.destination is None and "not a whole percentage" in p.problems[0]
    p = parse_annotations({H + "destination": "50% a.static"})
    assert p.destination is not None and "adding up to 50, not 100" in p.problems[0]


# -- fuzzing: never crash; every annotation either applies or is a problem ---------------------

_KEYS = [
    "canary",
    "canary-weight",
    "canary-weight-total",
    "canary-by-header",
    "canary-by-header-value",
    "canary-by-cookie",
    "rewrite-target",
    "use-regex",
    "upstream-vhost",
    "temporal-redirect",
    "permanent-redirect",
    "permanent-redirect-code",
    "ssl-redirect",
    "app-root",
    "enable-cors",
    "cors-allow-origin",
    "cors-max-age",
    "proxy-next-upstream",
    "proxy-next-upstream-tries",
    "load-balance",
    "upstream-hash-by",
    "affinity",
    "session-cookie-max-age",
    "whitelist-source-range",
    "mirror-target-service",
    "mirror-percentage",
    "backend-protocol",
    "proxy-ssl-secret",
    "auth-tls-secret",
    "ssl-cipher",
    "default-backend",
    "custom-http-errors",
    "ignore-path-case",
    "match-method",
    "timeout",
    "rewrite-path",
    "full-path-regex",
    "destination",
    "request-header-control-add",
    "exact-match-header-x",
    "regex-match-query-q",
]
_VALUES = st.one_of(
    st.sampled_from(
        ["", "true", "false", "0", "-3", "50", "abc", "$1", "/a(b)?", "(?=x)", "10.0.0.0/8", "x y"]
    ),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.tuples(st.sampled_from([N, H]), st.sampled_from(_KEYS)).map("".join), _VALUES, max_size=8
    )
)
def test_fuzzed_annotations_never_crash(annotations: dict[str, str]) -> None:
    p = parse_annotations(annotations)
    for problem in p.problems:
        assert problem.startswith("annotation ") and any(key in problem for key in annotations)
    t = annotated(annotations, services(("web", (80,)), ("errors", (80,))))
    assert t.routes, "an Ingress with a valid rule always serves"
    assert set(p.problems) <= set(t.warnings)
