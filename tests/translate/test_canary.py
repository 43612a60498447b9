"""Canary Ingresses merged into the normal routes of a virtual host (docs/higress.md §1.1)."""

from __future__ import annotations

from tests.translate.ingress_objects import N, make_ingress, origin, path, prefix, translate, web
from xdsbus.model.routes import Destination, HeaderMatch, HeaderMutation, Route, StringMatchKind
from xdsbus.translate.canary import apply_canaries, normalize_weights
from xdsbus.translate.ingress_annotations import CanarySpec

NORMAL = origin("default/normal", "2025-01-01T00:00:00Z")
CANARY_A = origin("default/canary-a", "2026-01-01T00:00:00Z")
CANARY_B = origin("default/canary-b", "2026-02-01T00:00:00Z")


def _normal(**kw) -> Route:  # type: ignore[no-untyped-def]
    kw.setdefault("destinations", (web(),))
    return Route(path=prefix("/api"), origin=NORMAL, timeout_ms=5000, **kw)


def _canary(svc: str, at=CANARY_A, **kw) -> Route:  # type: ignore[no-untyped-def]
    kw.setdefault("path", prefix("/api"))
    return Route(destinations=(web(name=svc),), origin=at, **kw)


def test_canary_ingress_routes_are_marked() -> None:
    t = translate(
        make_ingress(
            ("a.com", [path("/api", backend="v2")]),
            annotations={N + "canary": "true", N + "canary-weight": "10"},
            default_backend={"service": {"name": "web", "port": {"number": 80}}},
        )
    )
    assert [(hr.host, hr.canary) for hr in t.routes] == [("a.com", CanarySpec(weight=10))]
    assert t.warnings == ["defaultBackend: ignored on a canary Ingress"]


def test_by_header_inserts_a_copy_before_the_normal_route() -> None:
    normal = _normal()
    other = Route(path=prefix("/other"), destinations=(web(),), origin=NORMAL)
    canary = _canary("v2", request_headers=HeaderMutation(set=(("x-canary", "1"),)), timeout_ms=1)
    result = apply_canaries([other, normal], [(canary, CanarySpec(header="X-Canary"))])
    assert result.orphans == []
    assert result.routes[0] == other and result.routes[2] == normal
    inserted = result.routes[1]
    assert inserted.headers == (HeaderMatch(name="x-canary", value="always"),)
    assert inserted.destinations == (web(name="v2", fallback=web()),)
    assert inserted.timeout_ms == 5000, "policies come from the normal route"
    assert inserted.request_headers == HeaderMutation(set=(("x-canary", "1"),)), (
        "header control from the canary"
    )
    assert inserted.origin == CANARY_A


def test_header_value_pattern_and_cookie() -> None:
    def condition(spec: CanarySpec) -> HeaderMatch:
        result = apply_canaries([_normal()], [(_canary("v2"), spec)])
        return result.routes[0].headers[0]

    assert condition(CanarySpec(header="X-C", header_value="v2")) == HeaderMatch(
        name="x-c", kind=StringMatchKind.REGEX, value="always|v2"
    )
    assert condition(CanarySpec(header="X-C", header_pattern="^b")) == HeaderMatch(
        name="x-c", kind=StringMatchKind.REGEX, value=".*^b.*"
    )
    assert condition(CanarySpec(cookie="beta")) == HeaderMatch(
        name="cookie", kind=StringMatchKind.REGEX, value=r"^(.*?;\s*)?(beta=always)(;.*)?$"
    )


def test_by_weight_merges_destinations() -> None:
    result = apply_canaries([_normal()], [(_canary("v2"), CanarySpec(weight=30))])
    assert result.routes == [
        _normal(destinations=(web(weight=70), web(name="v2", weight=30, fallback=web())))
    ]


def test_weight_total() -> None:
    result = apply_canaries([_normal()], [(_canary("v2"), CanarySpec(weight=1, weight_total=3))])
    assert [d.weight for d in result.routes[0].destinations] == [67, 33]


def test_several_canaries_combine_oldest_first() -> None:
    normal = _normal()
    canaries = [
        (_canary("v3", at=CANARY_B), CanarySpec(weight=20)),
        (_canary("v2", at=CANARY_A), CanarySpec(weight=10, weight_total=200)),
        (_canary("hdr", at=CANARY_B), CanarySpec(header="X-Beta")),
    ]
    result = apply_canaries([normal], canaries)
    header_route, merged = result.routes
    assert header_route.destinations[0].hostname.startswith("hdr.")
    # Total from the oldest canary (200): 10/200 → 5, 20/200 → 10, primary 85.
    assert [(d.hostname.split(".")[0], d.weight) for d in merged.destinations] == [
        ("web", 85),
        ("v2", 5),
        ("v3", 10),
    ]


def test_weights_over_the_total_scale_down() -> None:
    result = apply_canaries(
        [_normal()],
        [(_canary("v2"), CanarySpec(weight=80)), (_canary("v3", at=CANARY_B), CanarySpec(weight=80))],
    )
    assert [d.weight for d in result.routes[0].destinations] == [0, 50, 50]


def test_orphan_when_no_normal_route_matches() -> None:
    methods = _canary("v2", methods=("GET",))
    elsewhere = _canary("v2", path=prefix("/nope"))
    result = apply_canaries(
        [_normal()], [(methods, CanarySpec(weight=5)), (elsewhere, CanarySpec(header="x"))]
    )
    assert result.routes == [_normal()]
    assert result.orphans == [(methods, CanarySpec(weight=5)), (elsewhere, CanarySpec(header="x"))]


def test_canary_never_joins_another_canary() -> None:
    first = (_canary("hdr"), CanarySpec(header="x"))
    second = (_canary("w", at=CANARY_B), CanarySpec(weight=50))
    result = apply_canaries([_normal()], [first, second])
    assert [d.hostname.split(".")[0] for d in result.routes[0].destinations] == ["hdr"]
    assert [(d.hostname.split(".")[0], d.weight) for d in result.routes[1].destinations] == [
        ("web", 50),
        ("w", 50),
    ]


def test_fallbacks_chain_to_the_primary() -> None:
    own = web(name="own-fallback")
    primary_fallback = web(name="primary-fallback")
    normal = _normal(destinations=(web(fallback=primary_fallback),))
    canary = Route(path=prefix("/api"), destinations=(web(name="v2", fallback=own),), origin=CANARY_A)
    result = apply_canaries([normal], [(canary, CanarySpec(weight=10))])
    chain: list[str] = []
    dest: Destination | None = result.routes[0].destinations[1]
    while dest is not None:
        chain.append(dest.hostname.split(".")[0])
        dest = dest.fallback
    assert chain == ["v2", "own-fallback", "web", "primary-fallback"]


def test_normalize_weights_matches_higress_float32() -> None:
    assert normalize_weights([1], 100) == [100]
    assert normalize_weights([1, 29], 100) == [71, 29]
    assert normalize_weights([1, 1, 1], 3) == [34, 33, 33]
    assert normalize_weights([1, 7], 9) == [23, 77]
    assert normalize_weights([80, 20], 100) == [80, 20]
    assert normalize_weights([50, 30], 80) == [63, 37]
