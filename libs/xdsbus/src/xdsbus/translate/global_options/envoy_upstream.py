"""What higress-config `upstream` changes on every cluster (Higress: CLUSTER MERGE patches in
global.go, generateUpstreamEnvoyFilter): the HTTP idle timeout of upstream connections and the
connection buffer limit."""

from __future__ import annotations

import functools

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import protocol_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from google.protobuf import any_pb2, duration_pb2

from xdsbus.translate.envoy_common import pack
from xdsbus.translate.global_options.model import UpstreamOptions

HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def set_upstream_options(cluster: cluster_pb2.Cluster, upstream: UpstreamOptions, *, http2: bool) -> None:
    """Set the cluster's protocol options (HTTP/2 or HTTP/1.1, with the idle timeout) and buffer limit,
    replacing any protocol options it had."""
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(
        _protocol_options(upstream, http2)
    )
    cluster.per_connection_buffer_limit_bytes.value = upstream.connection_buffer_limits


@functools.lru_cache(maxsize=16)
def _protocol_options(upstream: UpstreamOptions, http2: bool) -> any_pb2.Any:
    # Higress merges the deprecated Cluster.common_http_protocol_options; its place in the v3 API is the
    # HttpProtocolOptions extension, which must also say the protocol (HTTP/1.1 is Envoy's default).
    # Packed once per value: every cluster of a full build shares these bytes.
    config = hpo.HttpProtocolOptions.ExplicitHttpConfig()
    if http2:
        config.http2_protocol_options.CopyFrom(protocol_pb2.Http2ProtocolOptions())
    else:
        config.http_protocol_options.CopyFrom(protocol_pb2.Http1ProtocolOptions())
    options = hpo.HttpProtocolOptions(explicit_http_config=config)
    options.common_http_protocol_options.idle_timeout.CopyFrom(
        duration_pb2.Duration(seconds=upstream.idle_timeout)
    )
    return pack(options)


def speaks_http2(cluster: cluster_pb2.Cluster) -> bool:
    """Whether the cluster's protocol options say HTTP/2."""
    packed = cluster.typed_extension_protocol_options.get(HTTP_PROTOCOL_OPTIONS)
    if packed is None:
        return False
    options = hpo.HttpProtocolOptions()
    packed.Unpack(options)
    return options.explicit_http_config.HasField("http2_protocol_options")
