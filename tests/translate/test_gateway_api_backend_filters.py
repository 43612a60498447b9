"""Gateway API per-backendRef RequestRedirect and URLRewrite filters (a rule's match split by weight when
its backends disagree), retry backoff, and ReplacePrefixMatch on the `/` prefix, through the translator.
Every scenario ends equal to a full build."""

from __future__ import annotations

from typing import Any

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.v3 import percent_pb2

from tests.translate.gateway_api_objects import (
    NS,
    GatewayHarness,
    backend,
    cluster_of,
    gateway,
    gateway_class,
    http_route,
    rule,
    service,
    svc_cluster,
    weighted,
)
from xdsbus.contract.status import Verdict

ROUTE_NAME = f"httproute/{NS}/route/rule/0/match/0"


def _base(h: GatewayHarness) -> None:
    h.put(gateway_class(), gateway("gw"), service("web"), service("web2"), service("web3"))


def _redirect(**spec: Any) -> dict[str, Any]:
    return {"type": "RequestRedirect", "requestRedirect": spec}


def _rewrite(**spec: Any) -> dict[str, Any]:
    return {"type": "URLRewrite", "urlRewrite": spec}


def _prefix(value: str) -> dict[str, str]:
    return {"type": "ReplacePrefixMatch", "replacePrefixMatch": value}


def _full(value: str) -> dict[str, str]:
    return {"type": "ReplaceFullPath", "replaceFullPath": value}


def _fraction(route: rc.Route) -> int | None:
    """The route's runtime fraction in millionths, None without one."""
    if not route.match.HasField("runtime_fraction"):
        return None
    value = route.match.runtime_fraction.default_value
    assert value.denominator == percent_pb2.FractionalPercent.MILLION
    return value.numerator


def _warnings(h: GatewayHarness) -> list[str]:
    return h.gw_status("HTTPRoute", f"{NS}/route").warnings


def test_a_single_backends_redirect_answers_for_the_rule() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(
                    path=("PathPrefix", "/full"),
                    backends=[backend(filters=[_redirect(path=_full("/redirected-full"))])],
                ),
                rule(
                    path=("PathPrefix", "/prefix"),
                    backends=[
                        backend(filters=[_redirect(path=_prefix("/redirected-prefix"), statusCode=301)])
                    ],
                ),
            ]
        )
    )
    by_path = {r.match.path_separated_prefix: r for r in h.routes()}
    full = by_path["/full"]
    assert full.WhichOneof("action") == "redirect"
    assert full.redirect.path_redirect == "/redirected-full" and full.redirect.port_redirect == 80
    prefix = by_path["/prefix"].redirect
    assert prefix.prefix_rewrite == "/redirected-prefix"
    assert prefix.response_code == rc.RedirectAction.MOVED_PERMANENTLY
    # No split, no warning: the filter is supported now.
    assert all(_fraction(r) is None for r in h.routes())
    status = h.gw_status("HTTPRoute", f"{NS}/route")
    assert status.state is Verdict.ACCEPTED and status.warnings == []
    h.assert_matches_full_build()


def test_a_single_backends_rewrite_applies_to_its_route_and_overrides_the_rules() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(
                    path=("PathPrefix", "/prefix"),
                    filters=[_rewrite(hostname="rule.example.com", path=_full("/rule"))],
                    backends=[backend(filters=[_rewrite(path=_prefix("/rewritten-prefix"))])],
                ),
                rule(
                    path=("PathPrefix", "/full"),
                    backends=[backend(filters=[_rewrite(path=_full("/rewritten-full"))])],
                ),
            ]
        )
    )
    by_path = {r.match.path_separated_prefix: r for r in h.routes()}
    prefix = by_path["/prefix"].route
    # The backend's URLRewrite replaces the rule's as a whole, its (absent) hostname included.
    assert prefix.prefix_rewrite == "/rewritten-prefix" and not prefix.host_rewrite_literal
    assert cluster_of(by_path["/prefix"]) == svc_cluster()
    full = by_path["/full"].route
    assert (full.regex_rewrite.pattern.regex, full.regex_rewrite.substitution) == ("^.*$", "/rewritten-full")
    assert _warnings(h) == []
    h.assert_matches_full_build()


def test_backends_with_the_same_filters_share_one_route() -> None:
    h = GatewayHarness()
    _base(h)
    same = [_rewrite(path=_prefix("/v2"))]
    h.put(
        http_route(
            rules=[
                rule(
                    path=("PathPrefix", "/api"),
                    backends=[
                        backend("web", weight=3, filters=same),
                        backend("web2", weight=1, filters=same),
                    ],
                )
            ]
        )
    )
    (only,) = h.routes()
    assert only.name == ROUTE_NAME and _fraction(only) is None
    assert only.route.prefix_rewrite == "/v2"
    assert weighted(only) == [(svc_cluster("web"), 3), (svc_cluster("web2"), 1)]
    h.assert_matches_full_build()


def test_differing_filters_split_the_match_by_cumulative_weight() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/exact")),
                rule(
                    path=("PathPrefix", "/api"),
                    backends=[
                        backend("web", weight=2, filters=[_rewrite(path=_prefix("/one"))]),
                        backend("web2", weight=1, filters=[_redirect(hostname="example.org")]),
                        backend("web3", weight=1),
                        # Shares the first backend's filters: one group, one route.
                        backend("web", port=8080, weight=4, filters=[_rewrite(path=_prefix("/one"))]),
                    ],
                ),
                rule(path=("PathPrefix", "/")),
            ]
        )
    )
    routes = h.routes()
    assert [r.name for r in routes] == [
        f"httproute/{NS}/route/rule/0/match/0",
        f"httproute/{NS}/route/rule/1/match/0/split/0",
        f"httproute/{NS}/route/rule/1/match/0/split/1",
        f"httproute/{NS}/route/rule/1/match/0/split/2",
        f"httproute/{NS}/route/rule/2/match/0",
    ]
    first, second, third = routes[1:4]
    assert all(r.match.path_separated_prefix == "/api" for r in (first, second, third))
    # Weights 2+4, 1 and 1 of 8: the draws below 6/8, then below 7/8, then the rest.
    assert [_fraction(r) for r in routes] == [None, 750_000, 875_000, None, None]
    assert first.match.runtime_fraction.runtime_key == f"xdsbus.split.{first.name}"
    assert second.match.runtime_fraction.runtime_key == f"xdsbus.split.{second.name}"
    # The group's weights 2 and 4 are reduced to 1 and 2 (see split_by_backend_filters).
    assert weighted(first) == [(svc_cluster("web"), 1), (svc_cluster("web"), 2)]
    assert first.route.prefix_rewrite == "/one"
    assert second.WhichOneof("action") == "redirect" and second.redirect.host_redirect == "example.org"
    assert cluster_of(third) == svc_cluster("web3") and not third.route.prefix_rewrite
    assert _warnings(h) == []
    h.assert_matches_full_build()
    # The same filters again: one route as before.
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/exact")),
                rule(
                    path=("PathPrefix", "/api"),
                    backends=[backend("web", weight=2), backend("web3", weight=1)],
                ),
                rule(path=("PathPrefix", "/")),
            ]
        )
    )
    assert [_fraction(r) for r in h.routes()] == [None, None, None]
    assert weighted(h.routes()[1]) == [(svc_cluster("web"), 2), (svc_cluster("web3"), 1)]
    h.assert_matches_full_build()


def test_split_parts_keep_their_precedence_among_other_routes() -> None:
    h = GatewayHarness()
    _base(h)
    older = http_route(
        "older",
        rules=[rule(path=("PathPrefix", "/api"), backends=[backend("web3")])],
        created="2025-01-01T00:00:00Z",
    )
    split = http_route(
        rules=[
            rule(
                matches=[
                    {"path": {"type": "PathPrefix", "value": "/api"}},
                    {"path": {"type": "Exact", "value": "/x"}},
                ],
                backends=[
                    backend("web", weight=1, filters=[_rewrite(hostname="a.example.com")]),
                    backend("web2", weight=1, filters=[_rewrite(hostname="b.example.com")]),
                ],
            )
        ]
    )
    h.put(split, older)
    names = [r.name for r in h.routes()]
    assert names == [
        f"httproute/{NS}/route/rule/0/match/1/split/0",
        f"httproute/{NS}/route/rule/0/match/1/split/1",
        f"httproute/{NS}/older/rule/0/match/0",
        f"httproute/{NS}/route/rule/0/match/0/split/0",
        f"httproute/{NS}/route/rule/0/match/0/split/1",
    ]
    hosts = [r.route.host_rewrite_literal for r in h.routes()]
    assert hosts == ["a.example.com", "b.example.com", "", "a.example.com", "b.example.com"]
    assert [_fraction(r) for r in h.routes()] == [500_000, None, None, 500_000, None]
    h.assert_matches_full_build()


def test_zero_weight_backends_and_their_filters() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                # Nothing is forwarded to the weight-0 backend: its redirect never runs, no split.
                rule(
                    path=("PathPrefix", "/canary"),
                    backends=[
                        backend("web", weight=1),
                        backend("web2", weight=0, filters=[_redirect(hostname="example.org")]),
                    ],
                ),
                # A weight-0 backend with the filters of a group with traffic stays in it.
                rule(
                    path=("PathPrefix", "/kept"),
                    backends=[
                        backend("web", weight=1, filters=[_rewrite(path=_prefix("/k"))]),
                        backend("web2", weight=0, filters=[_rewrite(path=_prefix("/k"))]),
                        backend("web3", weight=1),
                    ],
                ),
                # Every weight 0: nothing is forwarded, the rule answers 500.
                rule(
                    path=("PathPrefix", "/none"),
                    backends=[backend("web", weight=0, filters=[_rewrite(path=_prefix("/n"))])],
                ),
            ]
        )
    )
    routes = h.routes()
    by_name = {r.name.removeprefix(f"httproute/{NS}/route/"): r for r in routes}
    canary = by_name["rule/0/match/0"]
    assert cluster_of(canary) == svc_cluster("web") and _fraction(canary) is None
    kept = by_name["rule/1/match/0/split/0"]
    assert weighted(kept) == [(svc_cluster("web"), 1), (svc_cluster("web2"), 0)]
    assert kept.route.prefix_rewrite == "/k" and _fraction(kept) == 500_000
    assert cluster_of(by_name["rule/1/match/0/split/1"]) == svc_cluster("web3")
    none = by_name["rule/2/match/0"]
    assert none.direct_response.status == 500 and not none.route.prefix_rewrite
    h.assert_matches_full_build()


def test_per_backend_header_modifiers_survive_the_split() -> None:
    h = GatewayHarness()
    _base(h)
    header = {
        "type": "RequestHeaderModifier",
        "requestHeaderModifier": {"set": [{"name": "X-B", "value": "1"}]},
    }
    h.put(
        http_route(
            rules=[
                rule(
                    path=("PathPrefix", "/api"),
                    filters=[
                        {
                            "type": "ResponseHeaderModifier",
                            "responseHeaderModifier": {"add": [{"name": "X-R", "value": "r"}]},
                        }
                    ],
                    backends=[
                        backend("web", weight=1, filters=[header, _rewrite(path=_full("/a"))]),
                        backend("web2", weight=1, filters=[_rewrite(path=_full("/b"))]),
                    ],
                )
            ]
        )
    )
    first, second = h.routes()
    entry = first.route.weighted_clusters.clusters[0]
    assert entry.name == svc_cluster("web")
    assert [(o.header.key, o.header.value) for o in entry.request_headers_to_add] == [("X-B", "1")]
    assert first.route.regex_rewrite.substitution == "/a"
    assert cluster_of(second) == svc_cluster("web2") and second.route.regex_rewrite.substitution == "/b"
    # The rule's own filters apply to every part.
    for part in (first, second):
        assert [o.header.key for o in part.response_headers_to_add] == ["X-R"]
    h.assert_matches_full_build()


def test_invalid_backends_keep_their_share_in_a_split() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(
                    path=("PathPrefix", "/api"),
                    backends=[
                        backend("web", weight=3, filters=[_rewrite(path=_full("/a"))]),
                        backend("missing", weight=1),
                    ],
                )
            ]
        )
    )
    first, second = h.routes()
    assert _fraction(first) == 750_000 and cluster_of(first) == svc_cluster("web")
    assert _fraction(second) is None
    assert second.route.cluster_not_found_response_code == rc.RouteAction.INTERNAL_SERVER_ERROR
    h.assert_matches_full_build()


def test_a_backend_prefix_replacement_on_an_exact_match_makes_the_rule_answer_500() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/x"), backends=[backend(filters=[_rewrite(path=_prefix("/y"))])]),
                rule(path=("Exact", "/r"), backends=[backend(filters=[_redirect(path=_prefix("/y"))])]),
                rule(path=("Exact", "/ok")),
            ]
        )
    )
    by_path = {r.match.path: r for r in h.routes()}
    assert by_path["/x"].direct_response.status == 500
    assert by_path["/r"].direct_response.status == 500
    assert cluster_of(by_path["/ok"]) == svc_cluster()
    assert _warnings(h) == [
        "rule 0: ReplacePrefixMatch needs a PathPrefix match; it answers 500",
        "rule 1: ReplacePrefixMatch needs a PathPrefix match; it answers 500",
    ]
    h.assert_matches_full_build()


def test_retry_backoff_sets_envoys_base_and_max_interval() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/b"), retry={"attempts": 2, "backoff": "1s500ms"}),
                rule(path=("Exact", "/zero"), retry={"attempts": 2, "backoff": "0s"}),
                rule(path=("Exact", "/none"), retry={"attempts": 2}),
            ]
        )
    )
    by_path = {r.match.path: r for r in h.routes()}
    backoff = by_path["/b"].route.retry_policy.retry_back_off
    assert (backoff.base_interval.ToMilliseconds(), backoff.max_interval.ToMilliseconds()) == (1500, 15_000)
    # Envoy refuses a zero interval: the shortest it takes.
    zero = by_path["/zero"].route.retry_policy.retry_back_off
    assert (zero.base_interval.ToMilliseconds(), zero.max_interval.ToMilliseconds()) == (1, 10)
    assert not by_path["/none"].route.retry_policy.HasField("retry_back_off")
    h.assert_matches_full_build()


def test_an_invalid_duration_is_a_warning_and_the_rule_answers_500() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("Exact", "/backoff"), retry={"attempts": 2, "backoff": "1 second"}),
                rule(path=("Exact", "/timeout"), timeouts={"request": "10x"}),
                rule(path=("Exact", "/ok"), retry={"attempts": 2, "backoff": "100ms"}),
            ]
        )
    )
    by_path = {r.match.path: r for r in h.routes()}
    assert by_path["/backoff"].direct_response.status == 500
    assert by_path["/timeout"].direct_response.status == 500
    assert by_path["/ok"].route.retry_policy.retry_back_off.base_interval.ToMilliseconds() == 100
    status = h.gw_status("HTTPRoute", f"{NS}/route")
    assert status.state is Verdict.ACCEPTED
    assert status.warnings == [
        "rule 0: invalid retry.backoff duration '1 second'; it answers 500",
        "rule 1: invalid timeouts.request duration '10x'; it answers 500",
    ]
    h.assert_matches_full_build()


def test_replace_prefix_match_of_the_root_prefix() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                rule(path=("PathPrefix", "/"), filters=[_rewrite(path=_prefix("/x"))]),
                rule(
                    path=("PathPrefix", "/"),
                    filters=[_redirect(path=_prefix("/x/"))],
                    matches=[
                        {
                            "path": {"type": "PathPrefix", "value": "/"},
                            "headers": [{"name": "r", "value": "1"}],
                        }
                    ],
                ),
            ]
        )
    )
    redirect, rewrite = h.routes()
    # `/` → `/x`, `/foo` → `/x/foo`: the first alternative leaves the group empty.
    expected = ("^/$|^(/.+)$", "/x\\1")
    assert (rewrite.route.regex_rewrite.pattern.regex, rewrite.route.regex_rewrite.substitution) == expected
    assert (
        redirect.redirect.regex_rewrite.pattern.regex,
        redirect.redirect.regex_rewrite.substitution,
    ) == expected
    h.assert_matches_full_build()


def test_replace_prefix_match_with_trailing_slashes() -> None:
    h = GatewayHarness()
    _base(h)
    h.put(
        http_route(
            rules=[
                # `/foo/` matches like `/foo`; `/x/`'s slash only separates: `/foo/bar` → `/x/bar`.
                rule(path=("PathPrefix", "/foo/"), filters=[_rewrite(path=_prefix("/x/"))]),
                rule(path=("PathPrefix", "/bar"), filters=[_rewrite(path=_prefix("/"))]),
                rule(path=("PathPrefix", "/"), filters=[_rewrite(path=_prefix("/"))]),
            ]
        )
    )
    foo, bar, root = h.routes()
    assert foo.match.path_separated_prefix == "/foo" and foo.route.prefix_rewrite == "/x"
    assert (bar.route.regex_rewrite.pattern.regex, bar.route.regex_rewrite.substitution) == ("^/bar/*", "/")
    assert (root.route.regex_rewrite.pattern.regex, root.route.regex_rewrite.substitution) == ("^/*", "/")
    h.assert_matches_full_build()
