"""The cluster spans are sent to.

Higress names the tracer's cluster `outbound|<port>||<service>` and relies on Istio having built it for a
known service (tracing.go tracingClusterName). Here the collector gets a cluster of its own, named
`tracing|<port>||<service>`, so that it never collides with the service's cluster, which another handler
owns: it shares that service's endpoints when the service is known (EDS, or the registry's addresses),
and otherwise resolves `service` by DNS. gRPC tracers (skywalking, opentelemetry) speak HTTP/2, as
Higress's cluster patch makes them."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import duration_pb2

from xdsbus.model.services import Resolution, ServiceModel
from xdsbus.translate import envoy_clusters
from xdsbus.translate.global_options.envoy_upstream import set_upstream_options
from xdsbus.translate.global_options.model import TracingProvider, UpstreamOptions

_CONNECT_TIMEOUT = duration_pb2.Duration(seconds=10)


def build_collector_cluster(
    provider: TracingProvider, service: ServiceModel | None, upstream: UpstreamOptions
) -> cluster_pb2.Cluster:
    """The collector's cluster: the known service's endpoints on `provider.port`, else DNS."""
    name = provider.cluster_name
    port = next((p for p in service.ports if p.number == provider.port), None) if service else None
    if service is not None and port is not None:
        cluster = envoy_clusters.build_cluster(service, port, upstream)
        if service.resolution is Resolution.EDS:
            cluster.eds_cluster_config.service_name = cluster.name
        else:
            cluster.load_assignment.cluster_name = name
        cluster.name = name
    else:
        cluster = cluster_pb2.Cluster(
            name=name,
            connect_timeout=_CONNECT_TIMEOUT,
            type=cluster_pb2.Cluster.STRICT_DNS,
            dns_lookup_family=cluster_pb2.Cluster.V4_PREFERRED,
        )
        assignment = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
        address = assignment.endpoints.add().lb_endpoints.add().endpoint.address.socket_address
        address.address = provider.service
        address.port_value = provider.port
        cluster.load_assignment.CopyFrom(assignment)
    set_upstream_options(cluster, upstream, http2=provider.kind != "zipkin")
    return cluster
