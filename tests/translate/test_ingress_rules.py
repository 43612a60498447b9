"""Ingress rules into routes with Higress semantics: hosts, path types, regex mode, rewrites, app-root,
default backend, registry destinations, duplicates and errors."""

from __future__ import annotations

import pytest

from tests.translate.ingress_objects import H, N, make_ingress, origin, path, prefix, services, translate, web
from xdsbus.model.routes import Destination, PathKind, PathMatch, Redirect, Rewrite
from xdsbus.translate.ingress_annotations import HttpsRedirect
from xdsbus.translate.ingress_rules import IngressError, http_listener_route


def test_hosts_empty_wildcard_and_case() -> None:
    t = translate(
        make_ingress(("", [path("/a")]), ("*.Foo.com", [path("/b")]), ("Shop.Example.com", [path("/c")]))
    )
    assert [hr.host for hr in t.routes] == ["*", "*.foo.com", "shop.example.com"]


def test_bad_wildcard_host_is_reported_and_the_rest_serves() -> None:
    t = translate(make_ingress(("*.*.foo.com", [path("/a")]), ("a.foo.com", [path("/b")])))
    assert [hr.host for hr in t.routes] == ["a.foo.com"]
    assert t.warnings == ["rules[0]: host '*.*.foo.com': a wildcard must be the whole first label"]


def test_path_types() -> None:
    t = translate(
        make_ingress(
            (
                "a.com",
                [
                    path("/exact/", path_type="Exact"),
                    path("/pre/", path_type="Prefix"),
                    path("/impl", path_type="ImplementationSpecific"),
                    path("", path_type="Prefix"),
                ],
            )
        )
    )
    assert [hr.route.path for hr in t.routes] == [
        PathMatch(kind=PathKind.EXACT, value="/exact/"),
        prefix("/pre"),
        prefix("/impl"),
        prefix("/"),
    ]


def test_bad_path_and_path_type_are_reported() -> None:
    t = translate(make_ingress(("a.com", [path("/ok"), path("rel"), path("/x", path_type="Glob")])))
    assert [hr.route.path for hr in t.routes] == [prefix("/ok")]
    assert t.warnings == [
        "rules[0].http.paths[1]: path 'rel' must start with '/'",
        "rules[0].http.paths[2]: pathType 'Glob' is not Exact, Prefix or ImplementationSpecific",
    ]


def test_use_regex_makes_prefix_regexes() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/api/v[0-9]+"), path("/x", path_type="Exact")]),
            annotations={N + "use-regex": "true"},
        )
    )
    assert [hr.route.path for hr in t.routes] == [
        PathMatch(kind=PathKind.REGEX, value="/api/v[0-9]+.*"),
        PathMatch(kind=PathKind.REGEX, value="/x.*"),
    ]


def test_full_path_regex() -> None:
    t = translate(
        make_ingress(("a.com", [path("/api/v[0-9]+")]), annotations={H + "full-path-regex": "true"})
    )
    assert t.routes[0].route.path == PathMatch(kind=PathKind.REGEX, value="/api/v[0-9]+$")
    # H only: the nginx prefix does nothing.
    t = translate(make_ingress(("a.com", [path("/api")]), annotations={N + "full-path-regex": "true"}))
    assert t.routes[0].route.path == prefix("/api")


def test_invalid_regex_path_is_reported() -> None:
    t = translate(
        make_ingress(("a.com", [path("/(?=x)"), path("/ok")]), annotations={N + "use-regex": "true"})
    )
    assert [hr.route.path.value for hr in t.routes] == ["/ok.*"]
    assert t.warnings[0] == (
        "rules[0].http.paths[0]: path '/(?=x)' as a regex '/(?=x).*' "
        "is not a valid RE2 regular expression (invalid perl operator: (?=)"
    )


def test_regex_path_over_envoys_program_size_is_dropped_alone() -> None:
    """Envoy would refuse the shared route configuration for it (docs/design.md §6), so only that
    path goes, with its program size in the warning; the other host and path still serve."""
    big = "/api/[a-z0-9]{1,64}/items/[0-9]{1,20}"
    t = translate(
        make_ingress(
            ("a.com", [path(big), path("/ok/[0-9]+")]),
            ("b.com", [path("/b")]),
            annotations={H + "full-path-regex": "true"},
        )
    )
    assert [(hr.host, hr.route.path.value) for hr in t.routes] == [("a.com", "/ok/[0-9]+$"), ("b.com", "/b$")]
    assert t.warnings == [
        f"rules[0].http.paths[0]: path {big!r} as a regex {big + '$'!r} "
        "has RE2 program size 246, over Envoy's limit of 100 (re2.max_program_size)"
    ]


def test_rewrite_target_with_capture_groups() -> None:
    t = translate(
        make_ingress(("a.com", [path("/something(/|$)(.*)")]), annotations={N + "rewrite-target": "/$2"})
    )
    route = t.routes[0].route
    assert route.path == PathMatch(kind=PathKind.REGEX, value="/something(/|$)(.*).*")
    assert route.rewrite == Rewrite(regex="/something(/|$)(.*).*", substitution="/\\2")


def test_rewrite_target_without_regex() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/old"), path("/page", path_type="Exact")]),
            annotations={N + "rewrite-target": "/new"},
        )
    )
    assert [(hr.route.path, hr.route.rewrite) for hr in t.routes] == [
        (prefix("/old"), Rewrite(regex="^/old", substitution="/new")),
        (PathMatch(kind=PathKind.EXACT, value="/page"), Rewrite(regex="^/page$", substitution="/new")),
    ]
    t = translate(make_ingress(("a.com", [path("/old")]), annotations={N + "rewrite-target": "/"}))
    assert t.routes[0].route.rewrite == Rewrite(regex="^/old/?", substitution="/")
    # A path with regex characters switches the whole Ingress to regex mode.
    t = translate(make_ingress(("a.com", [path("/v1.0")]), annotations={N + "rewrite-target": "/new"}))
    assert t.routes[0].route.path == PathMatch(kind=PathKind.REGEX, value="/v1.0.*")


def test_rewrite_path_on_prefixes() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/"), path("/svc/"), path("/e", path_type="Exact")]),
            annotations={H + "rewrite-path": "/api"},
        )
    )
    rewrites = {hr.route.path.value: hr.route.rewrite for hr in t.routes}
    assert rewrites == {
        "/": Rewrite(prefix="/api/"),
        "/svc": Rewrite(prefix="/api"),
        "/e": Rewrite(path="/api"),
    }


def test_app_root_adds_an_exact_root_redirect_per_host() -> None:
    t = translate(
        make_ingress(("a.com", [path("/")]), ("b.com", [path("/x")]), annotations={N + "app-root": "/app"})
    )
    roots = [(hr.host, hr.route) for hr in t.routes if hr.route.redirect is not None]
    assert [h for h, _ in roots] == ["a.com", "b.com"]
    for _, route in roots:
        assert route.path == PathMatch(kind=PathKind.EXACT, value="/")
        assert route.redirect == Redirect(path="/app", code=302)
    bad = translate(make_ingress(("a.com", [path("/")]), annotations={N + "app-root": "app"}))
    assert len(bad.routes) == 1
    assert bad.warnings == [f"annotation {N}app-root: \"app\" is not a path (it must start with '/')"]


def test_default_backend_on_wildcard_and_hosts_without_catch_all() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/")]),
            ("b.com", [path("/x")]),
            default_backend={"service": {"name": "fallback", "port": {"number": 8080}}},
        )
    )
    defaults = [(hr.host, hr.route.destinations) for hr in t.routes if hr.default_backend]
    assert defaults == [("*", (web(8080, name="fallback"),)), ("b.com", (web(8080, name="fallback"),))]
    assert t.routes[-1].default_backend and t.routes[-2].default_backend
    assert all(hr.route.path == prefix("/") for hr in t.routes if hr.default_backend)


def test_default_backend_has_no_match_conditions() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/x")]),
            annotations={H + "match-method": "GET", N + "rewrite-target": "/$1", H + "timeout": "2"},
            default_backend={"service": {"name": "web", "port": {"number": 80}}},
        )
    )
    route = next(hr.route for hr in t.routes if hr.default_backend)
    assert (route.methods, route.rewrite, route.timeout_ms) == ((), None, 2000)


def test_default_backend_only_ingress() -> None:
    t = translate(make_ingress(default_backend={"service": {"name": "web", "port": {"number": 80}}}))
    assert [(hr.host, hr.default_backend) for hr in t.routes] == [("*", True)]


def test_named_port_resolution_and_missing_service() -> None:
    t = translate(
        make_ingress(("a.com", [path("/a", port="http-8080"), path("/b", backend="ghost", port="http")])),
        services(("web", (8080,))),
    )
    assert [hr.route.destinations for hr in t.routes] == [(web(8080),), ()]
    assert t.routes[1].route.direct_status == 503
    assert t.warnings == ["rules[0].http.paths[1]: service default/ghost not found"]
    assert t.services == ["ghost.default.svc.cluster.local", "web.default.svc.cluster.local"]


def test_registry_destinations_for_mcp_bridge_backend() -> None:
    backend = {"resource": {"apiGroup": "networking.higress.io", "kind": "McpBridge", "name": "default"}}
    ingress = make_ingress(
        ("a.com", [{"path": "/", "pathType": "Prefix", "backend": backend}]),
        annotations={H + "destination": "70% svc.DEFAULT-GROUP.public.nacos:8080\n30% legacy.static"},
    )
    t = translate(ingress)
    assert t.routes[0].route.destinations == (
        Destination(hostname="svc.DEFAULT-GROUP.public.nacos", port=8080, weight=70),
        Destination(hostname="legacy.static", port=80, weight=30),
    )
    assert t.services == ["legacy.static", "svc.DEFAULT-GROUP.public.nacos"]
    missing = translate(make_ingress(("a.com", [{"path": "/", "pathType": "Prefix", "backend": backend}])))
    assert missing.routes[0].route.destinations == () and missing.routes[0].route.direct_status == 503
    assert missing.warnings == [
        "rules[0].http.paths[0]: "
        "backend is the McpBridge but the higress.io/destination annotation is missing"
    ]


def test_duplicate_paths_within_one_ingress() -> None:
    t = translate(
        make_ingress(("a.com", [path("/x"), path("/x/", backend="other")]), ("A.com", [path("/x")]))
    )
    assert len(t.routes) == 1
    assert t.warnings == [
        "rules[0].http.paths[1]: host a.com: prefix /x is already routed by rules[0].http.paths[0]; ignored",
        "rules[1].http.paths[0]: host a.com: prefix /x is already routed by rules[0].http.paths[0]; ignored",
    ]


def test_every_rule_failing_is_an_error() -> None:
    with pytest.raises(IngressError) as exc:
        translate(make_ingress(("*.*.x", [path("/")]), ("a.com", [path("nope")])))
    assert "rules[0]: host" in str(exc.value) and "rules[1].http.paths[0]: path 'nope'" in str(exc.value)


def test_annotation_problems_alone_do_not_fail_an_empty_ingress() -> None:
    t = translate(make_ingress(annotations={H + "timeout": "x"}))
    assert t.routes == [] and t.warnings == [f'annotation {H}timeout: "x" is not an integer']


def test_https_redirect_only_on_the_http_listener() -> None:
    t = translate(make_ingress(("a.com", [path("/")]), annotations={N + "ssl-redirect": "true"}))
    hr = t.routes[0]
    assert hr.https_redirect is HttpsRedirect.IF_TLS and hr.route.redirect is None
    assert http_listener_route(hr, host_has_tls=False) == hr.route
    assert http_listener_route(hr, host_has_tls=True).redirect == Redirect(scheme="https", code=308)
    forced = translate(make_ingress(("a.com", [path("/")]), annotations={N + "force-ssl-redirect": "true"}))
    assert http_listener_route(forced.routes[0], host_has_tls=False).redirect == Redirect(
        scheme="https", code=308
    )


def test_url_redirect_applies_everywhere() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/")]),
            annotations={N + "permanent-redirect": "https://b.com/new", N + "ssl-redirect": "true"},
        )
    )
    hr = t.routes[0]
    assert hr.route.redirect == Redirect(scheme="https", host="b.com", path="/new", code=301)
    assert hr.https_redirect is HttpsRedirect.NONE


def test_routes_carry_their_origin() -> None:
    t = translate(
        make_ingress(("a.com", [path("/")]), name="shop", namespace="prod", created="2025-01-01T00:00:00Z")
    )
    assert t.routes[0].route.origin == origin("prod/shop", "2025-01-01T00:00:00Z")
    assert t.routes[0].route.destinations == (Destination(hostname="web.prod.svc.cluster.local", port=80),)


def test_regex_path_is_checked_as_envoy_compiles_it_with_ignore_path_case() -> None:
    """ignore-path-case makes Envoy compile `(?i)` + the path: 56 without it, 156 with it."""
    annotations = {N + "use-regex": "true"}
    t = translate(make_ingress(("a.com", [path("/api/[a-z]{1,20}")]), annotations=annotations))
    assert [hr.route.path.value for hr in t.routes] == ["/api/[a-z]{1,20}.*"] and t.warnings == []
    t = translate(
        make_ingress(
            ("a.com", [path("/api/[a-z]{1,20}"), path("/ok")]),
            annotations={**annotations, H + "ignore-path-case": "true"},
        )
    )
    assert [hr.route.path.value for hr in t.routes] == ["/ok.*"]
    assert t.warnings == [
        "rules[0].http.paths[0]: path '/api/[a-z]{1,20}' as a regex '/api/[a-z]{1,20}.*' "
        "has RE2 program size 156, over Envoy's limit of 100 (re2.max_program_size)"
    ]
