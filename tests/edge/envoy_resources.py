"""Envoy resources for edge tests, and the names in a response."""

from __future__ import annotations

from typing import Any, Protocol, Self, TypeVar

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2, extension_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import wrappers_pb2

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET

TYPE_OF = {
    cluster_pb2.Cluster: CLUSTER,
    endpoint_pb2.ClusterLoadAssignment: ENDPOINT,
    listener_pb2.Listener: LISTENER,
    route_pb2.RouteConfiguration: ROUTE,
    secret_pb2.Secret: SECRET,
    extension_pb2.TypedExtensionConfig: EXTENSION_CONFIG,
}


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.ApiVersion.V3
    return c


def cla(name: str, *ips: str, port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    lb = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
                )
            )
        )
        for ip in ips
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)]
    )


def listener(name: str, port: int = 8080, secrets: tuple[str, ...] = ()) -> listener_pb2.Listener:
    """A listener; with `secrets`, one TLS filter chain per Secret named by SDS (only Secrets a listener or
    cluster names are served, docs/design.md §10)."""
    out = listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
        ),
    )
    for secret_name in secrets:
        tls = tls_pb2.DownstreamTlsContext()
        tls.common_tls_context.tls_certificate_sds_secret_configs.add(
            name=secret_name
        ).sds_config.ads.SetInParent()
        chain = out.filter_chains.add()
        chain.filter_chain_match.server_names.append(f"{secret_name}.example.com")
        chain.transport_socket.name = "envoy.transport_sockets.tls"
        chain.transport_socket.typed_config.Pack(tls)
    return out


def route(name: str, cluster_name: str, domain: str = "*") -> route_pb2.RouteConfiguration:
    r = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=cluster_name),
    )
    return route_pb2.RouteConfiguration(
        name=name, virtual_hosts=[route_components_pb2.VirtualHost(name="vh", domains=[domain], routes=[r])]
    )


def secret(name: str, key: str = "-----BEGIN PRIVATE KEY-----secret") -> secret_pb2.Secret:
    s = secret_pb2.Secret(name=name)
    s.tls_certificate.CopyFrom(common_pb2.TlsCertificate())
    s.tls_certificate.certificate_chain.inline_string = "-----BEGIN CERTIFICATE-----cert"
    s.tls_certificate.private_key.inline_string = key
    return s


def extension_config(name: str, value: str = "") -> extension_pb2.TypedExtensionConfig:
    """An ECDS resource (its typed config a StringValue: the edge never looks inside)."""
    config = extension_pb2.TypedExtensionConfig(name=name)
    config.typed_config.Pack(wrappers_pb2.StringValue(value=value))
    return config


def name_of(message: Any) -> str:
    return message.cluster_name if isinstance(message, endpoint_pb2.ClusterLoadAssignment) else message.name


class Puts(Protocol):
    """Anything resources can be put into: the NATS ledger writer or the in-memory source."""

    def put(self, *messages: Any) -> Self: ...


W = TypeVar("W", bound=Puts)


def base_config(w: W) -> W:
    """Two EDS clusters with endpoints, a listener, a route and a secret."""
    return w.put(
        cluster("a"),
        cluster("b"),
        cla("a", "10.0.0.1"),
        cla("b", "10.0.0.2"),
        listener("l1", secrets=("s1",)),
        route("r1", "a"),
        secret("s1"),
    )


def names(response: Any) -> list[str]:
    """Resource names in a response (SotW: unpacked; delta: Resource.name)."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return sorted(r.name for r in response.resources)
    out = []
    for any_ in response.resources:
        for cls in TYPE_OF:
            if any_.type_url.endswith(cls.DESCRIPTOR.full_name):
                m = cls()
                any_.Unpack(m)
                out.append(name_of(m))
    return sorted(out)
