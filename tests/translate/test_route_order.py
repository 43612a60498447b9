"""Route order within a virtual host (Higress SortHTTPRoutes) and conflicts (oldest wins)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.translate.ingress_objects import origin, web
from xdsbus.model.routes import HeaderMatch, PathKind, PathMatch, QueryMatch, Route
from xdsbus.translate.route_order import order_routes

OLD = origin("default/old", "2025-01-01T00:00:00Z")
NEW = origin("default/new", "2026-01-01T00:00:00Z")


def _route(kind: PathKind, value: str, **kw) -> Route:  # type: ignore[no-untyped-def]
    kw.setdefault("origin", OLD)
    return Route(path=PathMatch(kind=kind, value=value), destinations=(web(),), **kw)


def _describe(routes: list[Route]) -> list[str]:
    out = []
    for r in routes:
        text = f"{r.path.kind} {r.path.value}"
        if r.methods:
            text += " " + ",".join(r.methods)
        text += "".join(f" {h.name}" for h in r.headers)
        text += "".join(f" ?{q.name}" for q in r.query)
        out.append(text)
    return out


def test_higress_order() -> None:
    routes = [
        _route(PathKind.PREFIX, "/"),
        _route(PathKind.REGEX, "/r.*"),
        _route(PathKind.PREFIX, "/api"),
        _route(PathKind.PREFIX, "/api", query=(QueryMatch(name="q"),)),
        _route(PathKind.PREFIX, "/api", headers=(HeaderMatch(name="x"),)),
        _route(PathKind.PREFIX, "/api", headers=(HeaderMatch(name="x"), HeaderMatch(name="y"))),
        _route(PathKind.PREFIX, "/api", methods=("GET",)),
        _route(PathKind.EXACT, "/"),
        _route(PathKind.PREFIX, "/api/v2"),
        _route(PathKind.EXACT, "/login"),
        _route(PathKind.PREFIX, "/", headers=(HeaderMatch(name="x"),)),
        _route(PathKind.REGEX, "/longer-regex.*"),
    ]
    default = _route(PathKind.PREFIX, "/", origin=NEW)
    kept, conflicts = order_routes(routes, default_backends=[])
    assert _describe(kept) == [
        "exact /login",
        "exact /",
        "prefix /api/v2",
        "prefix /api GET",
        "prefix /api x y",
        "prefix /api x",
        "prefix /api ?q",
        "prefix /api",
        "prefix / x",
        "regex /longer-regex.*",
        "regex /r.*",
        "prefix /",
    ]
    assert conflicts == []
    # With a user catch-all the default backend can never match: it is left out.
    kept, _ = order_routes(routes, default_backends=[default])
    assert kept[-1] is routes[0]


def test_default_backend_goes_last_and_oldest_wins() -> None:
    newer = _route(PathKind.PREFIX, "/", origin=NEW)
    older = _route(PathKind.PREFIX, "/", origin=OLD)
    api = _route(PathKind.PREFIX, "/api", origin=NEW)
    kept, conflicts = order_routes([api], default_backends=[newer, older])
    assert kept == [api, older]
    assert len(conflicts) == 1
    assert (conflicts[0].loser, conflicts[0].winner, conflicts[0].match) == (NEW, OLD, "default backend")


def test_conflicts_oldest_wins_with_full_match_key() -> None:
    a = _route(PathKind.PREFIX, "/x", origin=NEW, methods=("POST", "GET"))
    b = _route(PathKind.PREFIX, "/x", origin=OLD, methods=("GET", "POST"))
    c = _route(PathKind.PREFIX, "/x", origin=NEW, methods=("GET",))
    kept, conflicts = order_routes([a, b, c])
    assert kept == [b, c]
    assert [(x.loser, x.winner, x.match) for x in conflicts] == [(NEW, OLD, "prefix /x methods GET,POST")]


def test_same_origin_duplicates_are_dropped_silently() -> None:
    a = _route(PathKind.EXACT, "/", redirect=None)
    b = _route(PathKind.EXACT, "/")
    kept, conflicts = order_routes([a, b])
    assert kept == [a] and conflicts == []


def test_ties_keep_the_oldest_first_then_source_order() -> None:
    r1 = _route(PathKind.REGEX, "/a.*", origin=NEW)
    r2 = _route(PathKind.REGEX, "/b.*", origin=OLD)
    r3 = _route(PathKind.REGEX, "/c.*", origin=OLD)
    kept, _ = order_routes([r1, r3, r2])
    assert kept == [r3, r2, r1]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(PathKind)),
            st.sampled_from(["/", "/a", "/ab", "/a/b"]),
            st.sampled_from([(), ("GET",)]),
            st.sampled_from([OLD, NEW]),
        ),
        max_size=12,
    ),
    st.randoms(use_true_random=False),
)
def test_order_does_not_depend_on_input_order(specs, rnd) -> None:  # type: ignore[no-untyped-def]
    routes = [_route(k, v, methods=m, origin=o) for k, v, m, o in specs]
    shuffled = list(routes)
    rnd.shuffle(shuffled)
    kept_a, conflicts_a = order_routes(routes)
    kept_b, conflicts_b = order_routes(shuffled)
    # Identical routes may swap; what they are and the order of distinct routes may not.
    assert kept_a == kept_b
    assert sorted(c.match for c in conflicts_a) == sorted(c.match for c in conflicts_b)
