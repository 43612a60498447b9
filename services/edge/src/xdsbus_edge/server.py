"""The gRPC side: ADS and the per-type discovery services, SotW and delta, on one implementation.

Every RPC is a generic stream-stream handler: requests are parsed with the xds-protos classes,
responses are already serialized bytes (see encoding.py) and pass through an identity serializer.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus_edge.cache import SnapshotCache
from xdsbus_edge.delta import DeltaStream
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.sotw import SotwStream
from xdsbus_edge.stream import XdsStream

log = logging.getLogger(__name__)

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
}

# Options for the gRPC server: unlimited responses (a large CDS can pass gRPC's 4 MiB default), large
# requests (20k EDS names are about 1 MB), and keepalive to notice proxies that vanished.
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.max_ping_strikes", 0),
]


def _identity(data: bytes) -> bytes:
    return data


class XdsServer:
    """The xDS services of one edge, and the registry of its streams for /debug/syncz."""

    def __init__(self, cache: SnapshotCache, metrics: EdgeMetrics, *, lazy_scope_wait: float = 2.0) -> None:
        self.cache = cache
        self.metrics = metrics
        # How long a stream for a scope not yet followed waits for its first version before UNAVAILABLE.
        self.lazy_scope_wait = lazy_scope_wait
        self._streams: dict[int, XdsStream] = {}
        self._by_node: dict[str, set[XdsStream]] = {}

    # ---- gRPC ---------------------------------------------------------------------------------

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
            await stream_class(self, name, type_url, context).run(requests)

        return grpc.stream_stream_rpc_method_handler(
            behavior, request_deserializer=request_class.FromString, response_serializer=_identity
        )

    def add_to(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers(self.generic_handlers())

    # ---- registry -----------------------------------------------------------------------------

    def register(self, stream: XdsStream) -> None:
        self._streams[stream.id] = stream
        self._by_node.setdefault(stream.node_id, set()).add(stream)
        self.metrics.connected.inc(stream.mode)
        log.info(
            "proxy %s connected (%s, scope %s, %s)",
            stream.node_id,
            stream.rpc,
            stream.scope,
            stream.peer,
            extra={"proxy": stream.node_id, "scope": stream.scope, "stream": stream.id},
        )

    def unregister(self, stream: XdsStream) -> None:
        if self._streams.pop(stream.id, None) is None:
            return
        peers = self._by_node.get(stream.node_id)
        if peers is not None:
            peers.discard(stream)
            if not peers:
                del self._by_node[stream.node_id]
        self.metrics.connected.dec(stream.mode)
        log.info("proxy %s disconnected (%s)", stream.node_id, stream.rpc, extra={"stream": stream.id})

    def streams_of(self, node_id: str) -> list[XdsStream]:
        return list(self._by_node.get(node_id, ()))

    def streams(self) -> list[XdsStream]:
        return list(self._streams.values())

    def syncz(self) -> list[dict[str, Any]]:
        """Per connected stream (proxy) and type: version sent, acked, nacked, last error."""
        return [s.debug() for s in sorted(self._streams.values(), key=lambda s: (s.node_id, s.id))]
