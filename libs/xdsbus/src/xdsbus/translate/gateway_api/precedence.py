"""The Gateway API's route precedence, across every route merged into one virtual host.

In order: an exact path, then the longest prefix (regular expressions after prefixes, as Istio and
Higress order them), a method match, the most header matches, the most query parameter matches; ties go
to the oldest route (creation time), then namespace/name alphabetically, then rule and match order.
"""

from __future__ import annotations

from xdsbus.model.routes import PathKind, Route

_PATH_RANK = {PathKind.EXACT: 0, PathKind.PREFIX: 1, PathKind.REGEX: 2}

PrecedenceKey = tuple[int, int, int, int, int, str, str, int, int]


def precedence_key(route: Route, created: str, key: str, rule: int, match: int) -> PrecedenceKey:
    """Sort key of one match of one rule: smaller sorts first (wins)."""
    return (
        _PATH_RANK[route.path.kind],
        -len(route.path.value),
        0 if route.methods else 1,
        -len(route.headers),
        -len(route.query),
        created,
        key,
        rule,
        match,
    )
