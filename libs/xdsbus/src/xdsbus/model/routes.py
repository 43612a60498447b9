"""The internal route model: listeners → virtual hosts → routes → weighted destinations.

Ingress, Gateway API and registry-driven routing all translate into these types; Envoy resources are
generated from them alone.
"""

from __future__ import annotations

import enum

import msgspec


class PathKind(enum.StrEnum):
    EXACT = "exact"
    PREFIX = "prefix"
    REGEX = "regex"


class PathMatch(msgspec.Struct, frozen=True, kw_only=True):
    kind: PathKind
    value: str


class Destination(msgspec.Struct, frozen=True, kw_only=True):
    """A weighted backend: the cluster of `hostname:port`."""

    hostname: str
    port: int
    weight: int = 1


class RouteOrigin(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """Which object a route came from; conflicts resolve oldest first, then by namespace/name."""

    created: str
    kind: str
    key: str
    source: str = ""


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """One match and what to do with matching requests."""

    path: PathMatch
    destinations: tuple[Destination, ...] = ()
    # When no destination can be resolved the route answers this status instead of forwarding.
    direct_status: int = 0
    origin: RouteOrigin


class VirtualHostModel(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    domains: tuple[str, ...]
    routes: tuple[Route, ...]


class ListenerModel(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP listener and the route configuration it reads through RDS."""

    name: str
    port: int
    route_config: str
