"""The Gateway API's route precedence, across every route merged into one virtual host.

In order: an exact path, then the longest prefix (regular expressions after prefixes, as Istio and
Higress order them), a method match, the most header matches, the most query parameter matches; ties go
to the oldest route (creation time), then namespace/name alphabetically, then rule and match order.

A match split into several routes (see `Route.split_millionths`) keeps its parts adjacent and in order:
their keys differ only in the last element.
"""

from __future__ import annotations

from xdsbus.model.gateway_api import HTTP_ROUTE_KIND
from xdsbus.model.routes import PathKind, Route

_PATH_RANK = {PathKind.EXACT: 0, PathKind.PREFIX: 1, PathKind.REGEX: 2}

PrecedenceKey = tuple[int, int, int, int, int, str, str, int, int, int, int]


def precedence_key(
    route: Route, created: str, key: str, rule: int, match: int, part: int = 0
) -> PrecedenceKey:
    """Sort key of one match of one rule, or of one `part` of a split match: smaller sorts first (wins)."""
    return (
        _PATH_RANK[route.path.kind],
        -len(route.path.value),
        0 if route.methods else 1,
        -len(route.headers),
        -len(route.query),
        created,
        key,
        # An HTTPRoute and a GRPCRoute of the same name: HTTPRoute first, as the builder attaches them,
        # and never interleaved, which would put one route between the parts of the other's split.
        0 if route.origin.kind == HTTP_ROUTE_KIND else 1,
        rule,
        match,
        part,
    )
