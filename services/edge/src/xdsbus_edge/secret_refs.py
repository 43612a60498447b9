"""The Secrets a listener or a cluster names: the SDS configs of its TLS transport sockets.

SDS serves a proxy only these (docs/design.md §7, §10): a Secret no listener or cluster of the proxy's
scope names is not sent, even to a proxy that asks for it by name. Names are read once per resource body
(CachedResource) and counted per snapshot (snapshot.py), so a version costs what it changed.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2

from xdsbus.contract.type_urls import CLUSTER, LISTENER

_DOWNSTREAM = tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_UPSTREAM = tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name

# Types whose resources name Secrets.
REFERRING_TYPES = frozenset({LISTENER, CLUSTER})


def _common_names(common: tls_pb2.CommonTlsContext) -> Iterable[str]:
    for config in common.tls_certificate_sds_secret_configs:
        yield config.name
    if common.HasField("validation_context_sds_secret_config"):
        yield common.validation_context_sds_secret_config.name
    combined = common.combined_validation_context
    if common.HasField("combined_validation_context") and combined.HasField(
        "validation_context_sds_secret_config"
    ):
        yield combined.validation_context_sds_secret_config.name


def _socket_names(socket: base_pb2.TransportSocket) -> Iterable[str]:
    typed = socket.typed_config
    if not typed.type_url:
        return
    full_name = typed.type_url.rsplit("/", 1)[-1]
    if full_name == _DOWNSTREAM:
        downstream = tls_pb2.DownstreamTlsContext()
        typed.Unpack(downstream)
        yield from _common_names(downstream.common_tls_context)
        if downstream.HasField("session_ticket_keys_sds_secret_config"):
            yield downstream.session_ticket_keys_sds_secret_config.name
    elif full_name == _UPSTREAM:
        upstream = tls_pb2.UpstreamTlsContext()
        typed.Unpack(upstream)
        yield from _common_names(upstream.common_tls_context)


def listener_secrets(listener: listener_pb2.Listener) -> frozenset[str]:
    """The Secret names of a listener's filter chains (and default filter chain)."""
    chains = list(listener.filter_chains)
    if listener.HasField("default_filter_chain"):
        chains.append(listener.default_filter_chain)
    return frozenset(
        name
        for chain in chains
        if chain.HasField("transport_socket")
        for name in _socket_names(chain.transport_socket)
    )


def cluster_secrets(cluster: cluster_pb2.Cluster) -> frozenset[str]:
    """The Secret names of a cluster's transport socket and transport socket matches."""
    sockets = [m.transport_socket for m in cluster.transport_socket_matches if m.HasField("transport_socket")]
    if cluster.HasField("transport_socket"):
        sockets.append(cluster.transport_socket)
    return frozenset(name for socket in sockets for name in _socket_names(socket))


def secrets_named(type_url: str, any_bytes: bytes) -> frozenset[str]:
    """The Secrets a resource (a serialized Any) names; empty for types that name none."""
    if type_url == LISTENER:
        wrapper = any_pb2.Any()
        wrapper.ParseFromString(any_bytes)
        listener = listener_pb2.Listener()
        return listener_secrets(listener) if wrapper.Unpack(listener) else frozenset()
    if type_url == CLUSTER:
        wrapper = any_pb2.Any()
        wrapper.ParseFromString(any_bytes)
        cluster = cluster_pb2.Cluster()
        return cluster_secrets(cluster) if wrapper.Unpack(cluster) else frozenset()
    return frozenset()
