"""What one Envoy resource names: the route configurations, clusters, endpoints, secrets and extension
configurations a proxy holding it must also receive. A derived scope (gateway_scopes.py) is its own
listeners and routes plus everything they name, transitively."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.config.trace.v3 import opentelemetry_pb2, skywalking_pb2, zipkin_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2

from xdsbus.contract.resources import Resource, ResourceKey
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET

_CACHE_LIMIT = 65536


def _unpack(body: bytes, message: type) -> object:
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(body)
    out = message()
    wrapper.Unpack(out)
    return out


def _tls_secrets(context: tls_pb2.CommonTlsContext) -> Iterable[str]:
    for sds in context.tls_certificate_sds_secret_configs:
        yield sds.name
    if context.HasField("validation_context_sds_secret_config"):
        yield context.validation_context_sds_secret_config.name
    if context.HasField("combined_validation_context"):
        yield context.combined_validation_context.validation_context_sds_secret_config.name


def _listener_refs(listener: listener_pb2.Listener) -> Iterable[ResourceKey]:
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    for chain in chains:
        for network_filter in chain.filters:
            if not network_filter.typed_config.Is(hcm.HttpConnectionManager.DESCRIPTOR):
                continue
            manager = hcm.HttpConnectionManager()
            network_filter.typed_config.Unpack(manager)
            if manager.HasField("rds"):
                yield ResourceKey(ROUTE, manager.rds.route_config_name)
            if manager.tracing.HasField("provider"):
                yield from _tracing_refs(manager.tracing.provider.typed_config)
            for http_filter in manager.http_filters:
                if http_filter.HasField("config_discovery"):
                    yield ResourceKey(EXTENSION_CONFIG, http_filter.name)
        socket = chain.transport_socket.typed_config
        if socket.Is(tls_pb2.DownstreamTlsContext.DESCRIPTOR):
            context = tls_pb2.DownstreamTlsContext()
            socket.Unpack(context)
            yield from (ResourceKey(SECRET, name) for name in _tls_secrets(context.common_tls_context))


def _tracing_refs(config: any_pb2.Any) -> Iterable[ResourceKey]:
    """The collector cluster of a tracer (global options: zipkin, skywalking, opentelemetry)."""
    if config.Is(zipkin_pb2.ZipkinConfig.DESCRIPTOR):
        zipkin = zipkin_pb2.ZipkinConfig()
        config.Unpack(zipkin)
        yield ResourceKey(CLUSTER, zipkin.collector_cluster)
    for message in (skywalking_pb2.SkyWalkingConfig, opentelemetry_pb2.OpenTelemetryConfig):
        if config.Is(message.DESCRIPTOR):
            tracer = message()
            config.Unpack(tracer)
            if tracer.grpc_service.envoy_grpc.cluster_name:
                yield ResourceKey(CLUSTER, tracer.grpc_service.envoy_grpc.cluster_name)


def _route_refs(config: route_pb2.RouteConfiguration) -> Iterable[ResourceKey]:
    for vhost in config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            if action.cluster:
                yield ResourceKey(CLUSTER, action.cluster)
            for weighted in action.weighted_clusters.clusters:
                yield ResourceKey(CLUSTER, weighted.name)
            for mirror in action.request_mirror_policies:
                if mirror.cluster:
                    yield ResourceKey(CLUSTER, mirror.cluster)


def _cluster_refs(cluster: cluster_pb2.Cluster) -> Iterable[ResourceKey]:
    if cluster.HasField("eds_cluster_config"):
        yield ResourceKey(ENDPOINT, cluster.eds_cluster_config.service_name or cluster.name)
    if cluster.HasField("cluster_type") and cluster.cluster_type.typed_config.Is(
        aggregate_pb2.ClusterConfig.DESCRIPTOR
    ):
        members = aggregate_pb2.ClusterConfig()
        cluster.cluster_type.typed_config.Unpack(members)
        yield from (ResourceKey(CLUSTER, name) for name in members.clusters)
    socket = cluster.transport_socket.typed_config
    if socket.Is(tls_pb2.UpstreamTlsContext.DESCRIPTOR):
        context = tls_pb2.UpstreamTlsContext()
        socket.Unpack(context)
        yield from (ResourceKey(SECRET, name) for name in _tls_secrets(context.common_tls_context))


class ReferenceReader:
    """Reads what resources name, once per content (keyed by sha256)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], tuple[ResourceKey, ...]] = {}

    def refs(self, key: ResourceKey, resource: Resource) -> tuple[ResourceKey, ...]:
        """The resources `resource` names, in a fixed order."""
        cached = self._seen.get((key.type_url, resource.sha256))
        if cached is not None:
            return cached
        found: Iterable[ResourceKey] = ()
        if key.type_url == LISTENER:
            found = _listener_refs(_unpack(resource.body, listener_pb2.Listener))  # type: ignore[arg-type]
        elif key.type_url == ROUTE:
            found = _route_refs(_unpack(resource.body, route_pb2.RouteConfiguration))  # type: ignore[arg-type]
        elif key.type_url == CLUSTER:
            found = _cluster_refs(_unpack(resource.body, cluster_pb2.Cluster))  # type: ignore[arg-type]
        refs = tuple(sorted(set(found)))
        if len(self._seen) >= _CACHE_LIMIT:
            self._seen.clear()
        self._seen[(key.type_url, resource.sha256)] = refs
        return refs
