"""Listeners, RouteConfigurations and VirtualHosts from the route model.

A RouteConfiguration is assembled from virtual hosts serialized one by one and cached: one Ingress change
re-serializes one virtual host, not the ten thousand around it.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import any_pb2, wrappers_pb2

from xdsbus.model.routes import ListenerModel, PathKind, Route, VirtualHostModel
from xdsbus.model.services import cluster_name
from xdsbus.wire import field

_HCM_TYPE = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
_ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"

_VIRTUAL_HOSTS_FIELD = route_pb2.RouteConfiguration.VIRTUAL_HOSTS_FIELD_NUMBER


def listener_name(port: int) -> str:
    """Istio/Higress naming: `0.0.0.0_<port>`."""
    return f"0.0.0.0_{port}"


def http_route_config_name(port: int) -> str:
    """Istio/Higress naming: `http.<port>`."""
    return f"http.{port}"


def build_http_listener(model: ListenerModel) -> listener_pb2.Listener:
    """A plaintext HTTP listener whose routes come through RDS."""
    manager = hcm.HttpConnectionManager(
        stat_prefix=model.name,
        codec_type=hcm.HttpConnectionManager.AUTO,
        rds=hcm.Rds(
            route_config_name=model.route_config,
            config_source=config_source_pb2.ConfigSource(ads={}, resource_api_version=config_source_pb2.V3),
        ),
        # Match virtual hosts on the host alone: clients send `Host: example.com:8080` too.
        strip_any_host_port=True,
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        http_filters=[
            hcm.HttpFilter(
                name="envoy.filters.http.router",
                typed_config=any_pb2.Any(
                    type_url=_ROUTER_TYPE, value=router_pb2.Router().SerializeToString()
                ),
            )
        ],
    )
    return listener_pb2.Listener(
        name=model.name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=model.port)
        ),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    listener_components_pb2.Filter(
                        name="envoy.filters.network.http_connection_manager",
                        typed_config=any_pb2.Any(
                            type_url=_HCM_TYPE, value=manager.SerializeToString(deterministic=True)
                        ),
                    )
                ]
            )
        ],
    )


def _route_match(route: Route) -> route_components_pb2.RouteMatch:
    path = route.path
    if path.kind is PathKind.EXACT:
        return route_components_pb2.RouteMatch(path=path.value)
    if path.kind is PathKind.REGEX:
        return route_components_pb2.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex=path.value))
    if path.value == "/" or path.value.endswith("/"):
        return route_components_pb2.RouteMatch(prefix=path.value)
    # Kubernetes Prefix semantics: /foo matches /foo and /foo/bar, not /foobar.
    return route_components_pb2.RouteMatch(path_separated_prefix=path.value)


def build_route(route: Route, index: int) -> route_components_pb2.Route:
    """One Envoy route; unresolvable destinations answer with the route's direct status."""
    out = route_components_pb2.Route(
        name=f"{route.origin.kind.lower()}/{route.origin.key}/{index}", match=_route_match(route)
    )
    destinations = route.destinations
    if not destinations:
        out.direct_response.status = route.direct_status or 503
        return out
    if len(destinations) == 1:
        out.route.cluster = cluster_name(destinations[0].port, destinations[0].hostname)
    else:
        weighted = out.route.weighted_clusters
        for dest in destinations:
            weighted.clusters.add(
                name=cluster_name(dest.port, dest.hostname),
                weight=wrappers_pb2.UInt32Value(value=dest.weight),
            )
    return out


def build_virtual_host(model: VirtualHostModel) -> route_components_pb2.VirtualHost:
    """A virtual host with its routes in the order the model gives."""
    return route_components_pb2.VirtualHost(
        name=model.name,
        domains=list(model.domains),
        routes=[build_route(route, i) for i, route in enumerate(model.routes)],
    )


def assemble_route_config(name: str, virtual_hosts: Iterable[bytes]) -> bytes:
    """A serialized RouteConfiguration from pre-serialized VirtualHosts.

    Equal, byte for byte, to building the message and serializing it deterministically: fields are
    written in field-number order, name (1) then virtual_hosts (2), and nothing else is set.
    """
    head = route_pb2.RouteConfiguration(name=name).SerializeToString(deterministic=True)
    return head + b"".join([field(_VIRTUAL_HOSTS_FIELD, vh) for vh in virtual_hosts])
