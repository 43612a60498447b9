"""Route order and conflicts within a virtual host, as Higress orders them.

Exact before prefix before regex, longer paths first, `/` last. When two objects claim the same match,
the oldest wins (creation time, then kind and namespace/name).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from xdsbus.model.routes import PathKind, Route, RouteOrigin

_KIND_RANK = {PathKind.EXACT: 0, PathKind.PREFIX: 1, PathKind.REGEX: 2}


class Conflict(msgspec.Struct, frozen=True):
    """A route that lost its match to an older object's route."""

    loser: RouteOrigin
    winner: RouteOrigin
    match: str


def _order_key(route: Route) -> tuple[int, int, str, RouteOrigin]:
    return (_KIND_RANK[route.path.kind], -len(route.path.value), route.path.value, route.origin)


def order_routes(routes: Iterable[Route]) -> tuple[list[Route], list[Conflict]]:
    """Routes in match order with conflicting duplicates removed, and the conflicts found."""
    ordered = sorted(routes, key=_order_key)
    kept: list[Route] = []
    conflicts: list[Conflict] = []
    winners: dict[tuple[PathKind, str], RouteOrigin] = {}
    for route in ordered:
        match = (route.path.kind, route.path.value)
        winner = winners.get(match)
        if winner is not None:
            if winner != route.origin:
                conflicts.append(Conflict(loser=route.origin, winner=winner, match=f"{match[0]} {match[1]}"))
            continue
        winners[match] = route.origin
        kept.append(route)
    return kept, conflicts
