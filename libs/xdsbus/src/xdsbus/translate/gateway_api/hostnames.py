"""Hostname rules of the Gateway API: listener and route hostnames, and their intersection.

A hostname `*.example.com` matches any name ending in `.example.com` (one label or more), never
`example.com` itself; this is also how Envoy matches the domain `*.example.com`.
"""

from __future__ import annotations

# The virtual host domain of a listener without hostname whose routes name none either.
ANY_HOST = "*"


def covers(hostname: str, name: str) -> bool:
    """Whether `hostname` ("" for a listener without one) matches every name `name` matches; `name` may
    itself be a wildcard, deeper or equal."""
    if not hostname or hostname == name:
        return True
    return hostname.startswith("*.") and name.endswith(hostname[1:]) and len(name) >= len(hostname)


def intersect_one(listener: str, route: str) -> str | None:
    """The names both a listener hostname and a route hostname match, as one hostname, or None."""
    if covers(listener, route):
        return route
    if covers(route, listener):
        return listener
    return None


def intersect(listener: str, route_hostnames: list[str]) -> list[str]:
    """The virtual host domains a route attached to a listener serves; empty when none intersect.

    `listener` is "" when the listener has no hostname."""
    names = sorted({h.lower() for h in route_hostnames})
    listener = listener.lower()
    if not names:
        return [listener or ANY_HOST]
    if not listener:
        return names
    return sorted({m for h in names if (m := intersect_one(listener, h)) is not None})
