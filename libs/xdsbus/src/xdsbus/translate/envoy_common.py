"""Small pieces every Envoy generator uses: typed configs and references to ADS-served resources."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, config_source_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

_TLS_SOCKET = "envoy.transport_sockets.tls"


def pack(message: Message) -> any_pb2.Any:
    """`message` in an Any, serialized deterministically (maps in a fixed order)."""
    return any_pb2.Any(
        type_url="type.googleapis.com/" + message.DESCRIPTOR.full_name,
        value=message.SerializeToString(deterministic=True),
    )


def ads_source() -> config_source_pb2.ConfigSource:
    """The config source of every dynamic resource: the ADS stream, API v3."""
    return config_source_pb2.ConfigSource(ads={}, resource_api_version=config_source_pb2.V3)


def sds_secret(name: str) -> secret_pb2.SdsSecretConfig:
    """A reference to an SDS secret served over ADS."""
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_source())


def tls_transport_socket(context: Message) -> base_pb2.TransportSocket:
    """The TLS transport socket carrying `context`, an Upstream- or DownstreamTlsContext."""
    return base_pb2.TransportSocket(name=_TLS_SOCKET, typed_config=pack(context))
