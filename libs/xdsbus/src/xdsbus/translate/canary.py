"""Canary Ingresses merged into the normal routes of one virtual host (Higress ApplyCanaryIngress).

A canary route joins the normal route with the same match (path kind and value, methods, header and query
conditions): the first one in route order, never another canary's route.
* By header or cookie: a copy of the normal route (its match and policies) that sends requests carrying
  the canary header to the canary's destinations, with the canary Ingress's own header control; it is
  inserted just before the normal route.
* By weight: the canary's destination joins the normal route's weighted destinations; weights become
  integer percentages exactly as Higress' normalizeWeightedCluster computes them.
Canary destinations fall back to the normal route's primary destination (then to its fallbacks).
Canaries apply oldest first; several canaries of one route combine.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from xdsbus.model.routes import Destination, Route
from xdsbus.translate.ingress_annotations.canary import CanarySpec
from xdsbus.translate.route_order import MatchKey, match_key


class CanaryResult(msgspec.Struct, frozen=True):
    # The routes of the virtual host with the canaries merged, in the order given.
    routes: list[Route]
    # Canaries without a normal route of the same match (their Ingress should be told).
    orphans: list[tuple[Route, CanarySpec]]


def _f32(value: float) -> float:
    """Round to the nearest float32, as Go's float32 arithmetic does after each operation."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


def normalize_weights(weights: Sequence[int], total: int) -> list[int]:
    """Higress normalizeWeightedCluster: the first weight is the primary's, the others are shares of
    max(their sum, total) as whole percentages (float32, truncated); the primary gets the rest of 100."""
    if len(weights) <= 1:
        return [100] * len(weights)
    denominator = max(sum(weights[1:]), total)
    if denominator <= 0:
        return [100] + [0] * (len(weights) - 1)
    rest = [int(_f32(_f32(_f32(float(w)) / _f32(float(denominator))) * 100.0)) for w in weights[1:]]
    return [100 - sum(rest), *rest]


def _with_fallback(dest: Destination, tail: Destination | None) -> Destination:
    """`dest` falling back through its own fallbacks first, then to `tail` (and tail's fallbacks)."""
    if tail is None:
        return dest
    if dest.fallback is None:
        return msgspec.structs.replace(dest, fallback=tail)
    return msgspec.structs.replace(dest, fallback=_with_fallback(dest.fallback, tail))


@dataclass
class _Entry:
    route: Route
    key: MatchKey | None  # None for inserted canary routes: nothing merges into them
    weighted: list[tuple[Route, CanarySpec]] = field(default_factory=list)


def _header_canary(normal: Route, canary: Route, spec: CanarySpec) -> Route:
    condition = spec.header_match()
    assert condition is not None
    primary = normal.destinations[0] if normal.destinations else None
    return msgspec.structs.replace(
        normal,
        headers=tuple(sorted((*normal.headers, condition))),
        destinations=tuple(_with_fallback(d, primary) for d in canary.destinations),
        request_headers=canary.request_headers,
        response_headers=canary.response_headers,
        origin=canary.origin,
        name=canary.name,
    )


def _weighted(normal: Route, canaries: list[tuple[Route, CanarySpec]]) -> Route:
    if not normal.destinations:
        return normal
    primary = normal.destinations[0]
    dests = list(normal.destinations)
    # Higress route WeightTotal: the destination annotation's sum, else the first canary's total.
    total = sum(d.weight for d in dests) if len(dests) > 1 else canaries[0][1].weight_total
    for canary, spec in canaries:
        if canary.destinations:
            dest = canary.destinations[0]
            dests.append(msgspec.structs.replace(_with_fallback(dest, primary), weight=spec.weight))
    if len(dests) == len(normal.destinations):
        return normal
    weights = normalize_weights([d.weight for d in dests], total)
    return msgspec.structs.replace(
        normal,
        destinations=tuple(msgspec.structs.replace(d, weight=w) for d, w in zip(dests, weights, strict=True)),
    )


def apply_canaries(routes: Sequence[Route], canaries: Sequence[tuple[Route, CanarySpec]]) -> CanaryResult:
    """Merge `canaries` (canary routes of this virtual host and their specs) into `routes` (the normal
    routes, already in match order)."""
    entries = [_Entry(route=r, key=match_key(r)) for r in routes]
    orphans: list[tuple[Route, CanarySpec]] = []
    for canary, spec in sorted(canaries, key=lambda c: c[0].origin):
        key = match_key(canary)
        index = next((i for i, e in enumerate(entries) if e.key == key), None)
        if index is None:
            orphans.append((canary, spec))
        elif spec.by_header:
            entries.insert(index, _Entry(route=_header_canary(entries[index].route, canary, spec), key=None))
        else:
            entries[index].weighted.append((canary, spec))
    out = [_weighted(e.route, e.weighted) if e.weighted else e.route for e in entries]
    return CanaryResult(routes=out, orphans=orphans)
