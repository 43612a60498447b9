"""Clusters and ClusterLoadAssignments from the service model."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from itertools import groupby
from operator import attrgetter

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import duration_pb2

from xdsbus.contract.wire import field
from xdsbus.model.services import Endpoint, Health, Resolution, ServiceModel, ServicePort, cluster_name
from xdsbus.translate.envoy_common import ads_source, tls_transport_socket
from xdsbus.translate.global_options.envoy_upstream import HTTP_PROTOCOL_OPTIONS as HTTP_PROTOCOL_OPTIONS
from xdsbus.translate.global_options.envoy_upstream import set_upstream_options
from xdsbus.translate.global_options.model import UpstreamOptions

CONNECT_TIMEOUT = duration_pb2.Duration(seconds=10)
# Cluster.name's field number.
_CLUSTER_NAME_FIELD = cluster_pb2.Cluster.DESCRIPTOR.fields_by_name["name"].number
_ZONE = attrgetter("zone")

_HEALTH = {
    Health.HEALTHY: health_check_pb2.HEALTHY,
    Health.UNHEALTHY: health_check_pb2.UNHEALTHY,
    Health.DRAINING: health_check_pb2.DRAINING,
}

# ServicePort.protocol values that speak HTTP/2 to the backend (Istio: appProtocol `grpc`,
# `kubernetes.io/h2c`, or a port name starting with `grpc`/`http2`; registries: HTTP2, GRPC, GRPCS).
_HTTP2_PORT_PROTOCOLS = frozenset({"HTTP2", "GRPC", "GRPCS", "H2C"})
# ServicePort.protocol values whose backend expects TLS (registry services and McpBridge `dns`/`static`
# registries with protocol HTTPS or GRPCS; Higress makes a DestinationRule with TLS SIMPLE for them).
_TLS_PORT_PROTOCOLS = frozenset({"HTTPS", "GRPCS"})


def port_speaks_http2(port: ServicePort) -> bool:
    """True when the backend behind `port` expects HTTP/2 (gRPC, h2c)."""
    return port.protocol.upper() in _HTTP2_PORT_PROTOCOLS


def set_http2(cluster: cluster_pb2.Cluster, upstream: UpstreamOptions | None = None) -> None:
    """Make `cluster` speak HTTP/2 (prior knowledge, or ALPN h2 over TLS) to its endpoints, with the
    upstream connection options (higress-config `upstream`, Higress's defaults when None)."""
    set_upstream_options(cluster, upstream or UpstreamOptions(), http2=True)


def build_cluster(
    service: ServiceModel, port: ServicePort, upstream: UpstreamOptions | None = None
) -> cluster_pb2.Cluster:
    """One cluster per service port: EDS for registries and Kubernetes, STRICT_DNS for DNS names, STATIC
    with the endpoints inline for `static` registries; HTTP/2 upstream and TLS when the port says so;
    the upstream connection options of higress-config (Higress's defaults when None)."""
    name = cluster_name(port.number, service.hostname)
    cluster = cluster_pb2.Cluster(name=name, connect_timeout=CONNECT_TIMEOUT)
    if service.resolution is not Resolution.EDS and service.endpoints:
        # Endpoints carried by the model (registries): STATIC addresses, or names STRICT_DNS resolves.
        if service.resolution is Resolution.STRICT_DNS:
            cluster.type = cluster_pb2.Cluster.STRICT_DNS
            cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        else:
            cluster.type = cluster_pb2.Cluster.STATIC
        cluster.load_assignment.CopyFrom(build_load_assignment(name, service.endpoints))
    elif service.resolution is Resolution.STATIC:
        # A static service without endpoints: a valid cluster that answers 503.
        cluster.type = cluster_pb2.Cluster.STATIC
        cluster.load_assignment.cluster_name = name
    elif service.resolution is Resolution.STRICT_DNS:
        cluster.type = cluster_pb2.Cluster.STRICT_DNS
        cluster.dns_lookup_family = cluster_pb2.Cluster.V4_PREFERRED
        target = port.target if isinstance(port.target, int) else port.number
        cluster.load_assignment.CopyFrom(
            endpoint_pb2.ClusterLoadAssignment(
                cluster_name=name,
                endpoints=[
                    endpoint_components_pb2.LocalityLbEndpoints(
                        lb_endpoints=[_lb_endpoint(Endpoint(address=service.dns_name, port=target))]
                    )
                ],
            )
        )
    else:
        cluster.type = cluster_pb2.Cluster.EDS
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    set_upstream_options(cluster, upstream or UpstreamOptions(), http2=port_speaks_http2(port))
    if port.protocol.upper() in _TLS_PORT_PROTOCOLS:
        set_upstream_tls(cluster, sni=service.sni, http2=port_speaks_http2(port))
    return cluster


def cluster_bytes(service: ServiceModel, port: ServicePort, upstream: UpstreamOptions | None = None) -> bytes:
    """`build_cluster(service, port, upstream)` serialized deterministically.

    The clusters of EDS services whose port needs no TLS differ only by name: their bytes are the name's
    field spliced before one shared serialization of the rest (fields are written in field-number order,
    and `name` is field 1), instead of building and serializing each of the 10k clusters of a full build
    (bench builder_full_build)."""
    upstream = upstream or UpstreamOptions()
    if service.resolution is Resolution.EDS and port.protocol.upper() not in _TLS_PORT_PROTOCOLS:
        name = field(_CLUSTER_NAME_FIELD, cluster_name(port.number, service.hostname).encode())
        return name + _eds_cluster_rest(port_speaks_http2(port), upstream)
    return build_cluster(service, port, upstream).SerializeToString(deterministic=True)


@functools.lru_cache(maxsize=16)
def _eds_cluster_rest(http2: bool, upstream: UpstreamOptions) -> bytes:
    """Everything but the name of an EDS cluster without TLS, serialized."""
    port = ServicePort(number=1, protocol="HTTP2" if http2 else "HTTP")
    cluster = build_cluster(ServiceModel(hostname="", ports=(port,)), port, upstream)
    cluster.ClearField("name")
    return cluster.SerializeToString(deterministic=True)


def set_upstream_tls(cluster: cluster_pb2.Cluster, *, sni: str, http2: bool) -> None:
    """TLS from Envoy to the endpoints without verifying them (Higress' TLS SIMPLE without a CA), with
    ALPN h2 for HTTP/2 backends so a TLS server that negotiates the protocol agrees to it."""
    context = tls_pb2.UpstreamTlsContext(sni=sni)
    if http2:
        context.common_tls_context.alpn_protocols.append("h2")
    cluster.transport_socket.CopyFrom(tls_transport_socket(context))


def _lb_endpoint(ep: Endpoint) -> endpoint_components_pb2.LbEndpoint:
    lb = endpoint_components_pb2.LbEndpoint()
    _fill_lb_endpoint(lb, ep)
    return lb


def _fill_lb_endpoint(lb: endpoint_components_pb2.LbEndpoint, ep: Endpoint) -> None:
    # Filled in place: about 3x faster with upb than building the nested messages from keyword
    # arguments, and byte-identical once serialized (setting a field marks its parents present).
    socket_address = lb.endpoint.address.socket_address
    socket_address.address = ep.address
    socket_address.port_value = ep.port
    lb.health_status = _HEALTH[ep.health]
    if ep.weight != 1:
        lb.load_balancing_weight.value = ep.weight


def build_load_assignment(name: str, endpoints: Sequence[Endpoint]) -> endpoint_pb2.ClusterLoadAssignment:
    """A ClusterLoadAssignment grouping endpoints by zone; `endpoints` must be sorted by (zone, ...)."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for zone, members in groupby(endpoints, key=_ZONE):
        group = cla.endpoints.add()
        if zone:
            group.locality.zone = zone
        add = group.lb_endpoints.add
        for ep in members:
            _fill_lb_endpoint(add(), ep)
    return cla
