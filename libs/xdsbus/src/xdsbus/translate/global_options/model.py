"""The global options as the translator uses them; every default is Higress's (docs/higress.md §5).

Frozen and hashable: a connection manager template is cached per options value."""

from __future__ import annotations

import msgspec

from xdsbus.translate.global_options.https import HttpsConfig

# Higress's gzip.contentType default (gzip.go NewDefaultGzip).
DEFAULT_GZIP_CONTENT_TYPES = (
    "text/html",
    "text/css",
    "text/plain",
    "text/xml",
    "application/json",
    "application/javascript",
    "application/xhtml+xml",
    "image/svg+xml",
)


class GzipOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Response compression (Envoy's compressor filter with the gzip library)."""

    enable: bool = True
    min_content_length: int = 1024
    content_type: tuple[str, ...] = DEFAULT_GZIP_CONTENT_TYPES
    disable_on_etag_header: bool = True
    memory_level: int = 5
    window_bits: int = 12
    chunk_size: int = 4096
    compression_level: str = "BEST_COMPRESSION"
    compression_strategy: str = "DEFAULT_STRATEGY"


class TracingProvider(msgspec.Struct, frozen=True, kw_only=True):
    """The one tracer spans go to: `zipkin`, `skywalking` or `opentelemetry`, at `service:port`."""

    kind: str
    service: str
    port: int
    access_token: str = ""

    @property
    def cluster_name(self) -> str:
        """The collector's cluster: `tracing|<port>||<service>` (envoy_tracing_cluster.py says why)."""
        return f"tracing|{self.port}||{self.service}"


class TracingOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Tracing of every request through the gateway; on only with a provider."""

    enable: bool = False
    sampling: float = 100.0
    timeout_ms: int = 500
    provider: TracingProvider | None = None

    @property
    def active(self) -> bool:
        """Whether the connection managers trace."""
        return self.enable and self.provider is not None


class Http2Options(msgspec.Struct, frozen=True, kw_only=True):
    """HTTP/2 settings of downstream connections."""

    max_concurrent_streams: int = 100
    initial_stream_window_size: int = 65535
    initial_connection_window_size: int = 1048576


class DownstreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Client connections: idle timeout (seconds, 0 for none), header size, buffers, HTTP/2."""

    idle_timeout: int = 180
    max_request_headers_kb: int = 60
    connection_buffer_limits: int = 32768
    http2: Http2Options = Http2Options()


class UpstreamOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Connections to backends: idle timeout (seconds, 0 for none) and buffers."""

    idle_timeout: int = 10
    connection_buffer_limits: int = 10485760


class GlobalOptions(msgspec.Struct, frozen=True, kw_only=True):
    """Everything higress-config sets that the translator applies."""

    gzip: GzipOptions = GzipOptions()
    tracing: TracingOptions = TracingOptions()
    downstream: DownstreamOptions = DownstreamOptions()
    upstream: UpstreamOptions = UpstreamOptions()
    add_x_real_ip_header: bool = False
    disable_x_envoy_headers: bool = False


DEFAULT_OPTIONS = GlobalOptions()


class CurrentOptions:
    """The options in force, shared by the handler that folds higress-config and higress-https (the only
    writer) and the builders of listeners, clusters and TLS hosts, which read them when they build."""

    def __init__(self) -> None:
        self.value = DEFAULT_OPTIONS
        self.https = HttpsConfig()
