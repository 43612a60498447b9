"""Route order and conflicts within a virtual host, as Higress orders them (`SortHTTPRoutes`).

1. Default backends (spec.defaultBackend) last.
2. A user catch-all (prefix `/` with no header, query or method condition) just before them.
3. Otherwise exact before prefix before regex; for one kind the longer path first, then routes limited
   to some methods, then more header conditions, then more query conditions.
4. Ties keep the oldest object first (creation time, then kind, namespace/name), then source order.

Two routes conflict when their match is the same: path kind and value, methods, and header and query
conditions (Higress' duplicate key). The oldest wins; the others are dropped and reported. Default
backends only compete among themselves, and are dropped silently on a host with a user catch-all (they
could never match there; Higress does not add one to such a host either).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from xdsbus.model.routes import HeaderMatch, PathKind, QueryMatch, Route, RouteOrigin

_KIND_RANK = {PathKind.EXACT: 0, PathKind.PREFIX: 1, PathKind.REGEX: 2}

MatchKey = tuple[PathKind, str, tuple[str, ...], tuple[HeaderMatch, ...], tuple[QueryMatch, ...]]


class Conflict(msgspec.Struct, frozen=True):
    """A route that lost its match to an older object's route."""

    loser: RouteOrigin
    winner: RouteOrigin
    match: str


def match_key(route: Route) -> MatchKey:
    """What makes two routes the same match (Higress' duplicate-route key, without the host)."""
    return (
        route.path.kind,
        route.path.value,
        tuple(sorted(set(route.methods))) if route.methods else (),
        tuple(sorted(route.headers)) if len(route.headers) > 1 else route.headers,
        tuple(sorted(route.query)) if len(route.query) > 1 else route.query,
    )


def is_catch_all(route: Route) -> bool:
    """Prefix `/` without any other condition: matches every request."""
    return (
        route.path.kind is PathKind.PREFIX
        and route.path.value == "/"
        and not route.headers
        and not route.query
        and not route.methods
    )


def describe_match(route: Route) -> str:
    """`prefix /api`, with its other conditions when it has some: `prefix /api methods GET,POST ...`."""
    text = f"{route.path.kind} {route.path.value}"
    if route.methods:
        text += " methods " + ",".join(sorted(set(route.methods)))
    for h in sorted(route.headers):
        text += f" header {h.name} {'not ' if h.invert else ''}{h.kind} {h.value!r}"
    for q in sorted(route.query):
        text += f" query {q.name} {q.kind} {q.value!r}"
    return text


def _order_key(route: Route) -> tuple[bool, int, int, int, int, int, RouteOrigin]:
    return (
        is_catch_all(route),
        _KIND_RANK[route.path.kind],
        -len(route.path.value),
        0 if route.methods else 1,
        -len(route.headers),
        -len(route.query),
        route.origin,
    )


def _dedupe(ordered: Iterable[Route], conflicts: list[Conflict], label: str = "") -> list[Route]:
    kept: list[Route] = []
    winners: dict[MatchKey, RouteOrigin] = {}
    for route in ordered:
        key = match_key(route)
        winner = winners.get(key)
        if winner is not None:
            if winner != route.origin:
                conflicts.append(
                    Conflict(loser=route.origin, winner=winner, match=label or describe_match(route))
                )
            continue
        winners[key] = route.origin
        kept.append(route)
    return kept


def order_routes(
    routes: Iterable[Route], *, default_backends: Iterable[Route] = ()
) -> tuple[list[Route], list[Conflict]]:
    """Routes in match order with conflicting duplicates removed, and the conflicts found.

    `default_backends` are the routes made from spec.defaultBackend: they go last, one per host.
    """
    conflicts: list[Conflict] = []
    kept = _dedupe(sorted(routes, key=_order_key), conflicts)
    backends = _dedupe(sorted(default_backends, key=lambda r: r.origin), conflicts, "default backend")
    if backends and not any(is_catch_all(r) for r in kept):
        kept.append(backends[0])
    return kept, conflicts
