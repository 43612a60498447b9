"""Listener isolation on a shared port: a request belongs to the most specific listener whose hostname
matches its host, and only that listener's routes may serve it.

Envoy picks a virtual host the same way the Gateway API picks a listener (an exact name, then the
longest `*.` suffix, then `*`), so isolation needs two things from the translation:
- a route's domain that a more specific listener on the port covers is dropped (a route of the listener
  without hostname, with `hostnames: ["*.example.com"]`, must not serve `a.example.com` when a listener
  `*.example.com` exists on the port);
- every listener hostname has a virtual host, empty when no route serves it, so that its requests do
  not fall through to a less specific listener's routes.

Over HTTPS the listener is chosen by SNI before the Host header is read. A request whose host belongs to
another listener than the connection's is misdirected and answered 421 (RFC 9110 §15.5.20), so a client
reusing a connection for another name reconnects instead of reaching the wrong listener's routes.

All our Gateways on a port share one Envoy listener, so isolation is per port, across Gateways.
"""

from __future__ import annotations

from dataclasses import dataclass

from xdsbus.model.routes import PathKind, PathMatch, Route, RouteOrigin
from xdsbus.translate.gateway_api.hostnames import ANY_HOST, covers

MISDIRECTED_STATUS = 421


@dataclass(frozen=True)
class PortListeners:
    """The distinct hostnames of the programmed listeners on one port ("" for a listener without)."""

    hostnames: tuple[str, ...]

    def shadows(self, own: str, domain: str) -> bool:
        """Whether a listener more specific than `own` covers all of `domain`: its requests are that
        listener's, not `own`'s."""
        return any(h != own and covers(own, h) and covers(h, domain) for h in self.hostnames)

    def more_specific(self, own: str) -> list[str]:
        """The listener hostnames on the port that take names away from `own`."""
        return [h for h in self.hostnames if h != own and covers(own, h)]


def misdirected_route(origin: RouteOrigin, name: str) -> Route:
    """A route answering 421 to every request of a virtual host that belongs to another listener."""
    return Route(
        path=PathMatch(kind=PathKind.PREFIX, value="/"),
        direct_status=MISDIRECTED_STATUS,
        direct_body="misdirected request: the host belongs to another listener than the TLS server name\n",
        origin=origin,
        name=name,
    )


def https_chain_domains(own: str, port: PortListeners) -> tuple[str, list[str]]:
    """For the SNI chain of listener hostname `own`: the domain its own requests fall into when no
    route names them (served, answering 404), and the domains that are misdirected there."""
    misdirected = port.more_specific(own)
    if own:
        misdirected.append(ANY_HOST)
    return own or ANY_HOST, misdirected
