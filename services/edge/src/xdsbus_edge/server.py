"""The gRPC side: ADS and the per-type discovery services, SotW and delta, on one implementation.

Every RPC is a generic stream-stream handler: delta requests are parsed with the xds-protos classes,
SotW requests are handed to the stream as bytes (sotw.py parses what it must), responses are already
serialized bytes (see encoding.py) and pass through an identity serializer. The
servicer context is the stream's Transport (interfaces.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET
from xdsbus_edge.delta import DeltaStream
from xdsbus_edge.interfaces import SnapshotSource, StreamRegistry
from xdsbus_edge.limits import StreamLimits
from xdsbus_edge.sotw import SotwStream
from xdsbus_edge.stream import XdsStream
from xdsbus_edge.stream_access import StreamAccess

# service -> method -> (mode, type URL the RPC is fixed to; None for ADS)
SERVICES: dict[str, dict[str, tuple[str, str | None]]] = {
    "envoy.service.discovery.v3.AggregatedDiscoveryService": {
        "StreamAggregatedResources": ("sotw", None),
        "DeltaAggregatedResources": ("delta", None),
    },
    "envoy.service.cluster.v3.ClusterDiscoveryService": {
        "StreamClusters": ("sotw", CLUSTER),
        "DeltaClusters": ("delta", CLUSTER),
    },
    "envoy.service.endpoint.v3.EndpointDiscoveryService": {
        "StreamEndpoints": ("sotw", ENDPOINT),
        "DeltaEndpoints": ("delta", ENDPOINT),
    },
    "envoy.service.listener.v3.ListenerDiscoveryService": {
        "StreamListeners": ("sotw", LISTENER),
        "DeltaListeners": ("delta", LISTENER),
    },
    "envoy.service.route.v3.RouteDiscoveryService": {
        "StreamRoutes": ("sotw", ROUTE),
        "DeltaRoutes": ("delta", ROUTE),
    },
    "envoy.service.secret.v3.SecretDiscoveryService": {
        "StreamSecrets": ("sotw", SECRET),
        "DeltaSecrets": ("delta", SECRET),
    },
    "envoy.service.extension.v3.ExtensionConfigDiscoveryService": {
        "StreamExtensionConfigs": ("sotw", EXTENSION_CONFIG),
        "DeltaExtensionConfigs": ("delta", EXTENSION_CONFIG),
    },
}

# Options for the gRPC server: unlimited responses (a large CDS can pass gRPC's 4 MiB default) and
# keepalive to notice proxies that vanished; request size and connection age are limits.server_options.
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    """The xDS services of one edge: each RPC runs a stream over the edge's source and registry, once
    `access` (None: every stream) admitted it."""

    def __init__(
        self,
        source: SnapshotSource,
        registry: StreamRegistry,
        access: StreamAccess | None = None,
        limits: StreamLimits | None = None,
    ) -> None:
        self.source = source
        self.registry = registry
        self.access = access
        # Shared by every stream of the edge (limits.py).
        self.limits = limits if limits is not None else StreamLimits()

    def generic_handlers(self) -> list[grpc.GenericRpcHandler]:
        handlers = []
        for service, methods in SERVICES.items():
            table = {
                method: self._method(f"{service}/{method}", mode, type_url)
                for method, (mode, type_url) in methods.items()
            }
            handlers.append(grpc.method_handlers_generic_handler(service, table))
        return handlers

    def _method(self, rpc: str, mode: str, type_url: str | None) -> grpc.RpcMethodHandler:
        stream_class: Callable[..., XdsStream] = SotwStream if mode == "sotw" else DeltaStream
        request_class: Any = (
            discovery_pb2.DiscoveryRequest if mode == "sotw" else discovery_pb2.DeltaDiscoveryRequest
        )
        name = rpc.rsplit("/", 1)[-1]

        async def behavior(requests: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> None:
            if self.access is not None:
                requests = await self.access.admit(requests, context, name, request_class.FromString)
            stream = stream_class(self.source, self.registry, name, type_url, context, self.limits)
            await stream.run(requests)

        # SotW requests reach the stream as bytes: it recognizes an ACK that repeats the subscription
        # without parsing its names (sotw_ack.py), and parses the others itself.
        deserializer = _identity if mode == "sotw" else request_class.FromString
        return grpc.stream_stream_rpc_method_handler(
            behavior, request_deserializer=deserializer, response_serializer=_identity
        )

    def add_to(self, server: grpc.aio.Server) -> None:
        """Serve the xDS services on a gRPC server."""
        server.add_generic_rpc_handlers(self.generic_handlers())
