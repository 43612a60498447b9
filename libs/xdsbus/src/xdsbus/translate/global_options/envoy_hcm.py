"""What the global options change in every HTTP connection manager and listener of the gateway.

Higress applies these as EnvoyFilter patches in the GATEWAY context (docs/global-options.md names the
patch each one follows); here they are applied while the connection manager template is built, so every
listener (Ingress ports and Gateway API ports) carries them.
"""

from __future__ import annotations

from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2
from envoy.config.core.v3 import base_pb2, extension_pb2, grpc_service_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, skywalking_pb2, zipkin_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.type.v3 import percent_pb2
from google.protobuf import duration_pb2, wrappers_pb2
from google.protobuf.internal.containers import RepeatedCompositeFieldContainer

from xdsbus.translate.envoy_common import pack
from xdsbus.translate.global_options.model import GlobalOptions, GzipOptions, TracingOptions

COMPRESSOR_FILTER = "envoy.filters.http.compressor"
HEADER_MUTATION_FILTER = "envoy.filters.http.header_mutation"
# The filters the options place themselves against (envoy_listeners.py builds them).
_CORS_FILTER = "envoy.filters.http.cors"
_ROUTER_FILTER = "envoy.filters.http.router"

# Higress's gzip patch (gzip.go constructGzipStruct): the library's name and the runtime key that keeps
# request compression off.
_GZIP_LIBRARY = "text_optimized"
_REQUEST_COMPRESSION_RUNTIME_KEY = "request_compressor_enabled"
# Higress names the gateway `higress-gateway.<namespace>` in spans (tracing.go).
_SERVICE_NAME = "higress-gateway.higress-system"
_ZIPKIN_HOSTNAME = "higress-gateway"
_ZIPKIN_ENDPOINT = "/api/v2/spans"


def apply_to_connection_manager(manager: hcm.HttpConnectionManager, options: GlobalOptions) -> None:
    """Set the downstream limits and tracing on `manager`, and put the options' HTTP filters into its
    filter chain, which must already hold the CORS filter and the router."""
    _set_downstream(manager, options)
    if options.tracing.active:
        manager.tracing.CopyFrom(_tracing(options.tracing))
    insert_option_filters(manager.http_filters, options)


def apply_to_listener(listener: listener_pb2.Listener, options: GlobalOptions) -> None:
    """The downstream connection buffer limit (Higress: a LISTENER MERGE patch)."""
    listener.per_connection_buffer_limit_bytes.value = options.downstream.connection_buffer_limits


def insert_option_filters(
    filters: RepeatedCompositeFieldContainer[hcm.HttpFilter], options: GlobalOptions
) -> None:
    """Insert the options' filters into an HCM filter list and adjust its router.

    Kept apart from the list envoy_listeners.py builds, so filters added there (wasm plugins, rate
    limits) and these do not need each other. Positions follow Higress: the compressor goes right
    before the CORS filter (gzip.go: INSERT_BEFORE envoy.filters.http.cors), so it is first to see
    requests and last to see responses; x-real-ip is set right before the router, where Higress's
    route-configuration header would be added."""
    chain = list(filters)
    names = [f.name for f in chain]
    if options.gzip.enable:
        at = names.index(_CORS_FILTER) if _CORS_FILTER in names else 0
        chain.insert(at, hcm.HttpFilter(name=COMPRESSOR_FILTER, typed_config=pack(_compressor(options.gzip))))
    router_at = next(i for i, f in enumerate(chain) if f.name == _ROUTER_FILTER)
    if options.add_x_real_ip_header:
        chain.insert(router_at, _x_real_ip_filter())
        router_at += 1
    router = router_pb2.Router()
    chain[router_at].typed_config.Unpack(router)
    if options.disable_x_envoy_headers:
        router.suppress_envoy_headers = True
    chain[router_at] = hcm.HttpFilter(name=_ROUTER_FILTER, typed_config=pack(router))
    del filters[:]
    filters.extend(chain)


def _set_downstream(manager: hcm.HttpConnectionManager, options: GlobalOptions) -> None:
    # Higress: an HCM MERGE patch with idle and stream idle timeouts, header size and HTTP/2 (global.go
    # constructDownstream).
    down = options.downstream
    manager.common_http_protocol_options.idle_timeout.CopyFrom(
        duration_pb2.Duration(seconds=down.idle_timeout)
    )
    manager.stream_idle_timeout.CopyFrom(duration_pb2.Duration(seconds=down.idle_timeout))
    manager.max_request_headers_kb.value = down.max_request_headers_kb
    h2 = down.http2
    manager.http2_protocol_options.CopyFrom(
        protocol_pb2.Http2ProtocolOptions(
            max_concurrent_streams=wrappers_pb2.UInt32Value(value=h2.max_concurrent_streams),
            initial_stream_window_size=wrappers_pb2.UInt32Value(value=h2.initial_stream_window_size),
            initial_connection_window_size=wrappers_pb2.UInt32Value(value=h2.initial_connection_window_size),
        )
    )


def _compressor(gzip: GzipOptions) -> compressor_pb2.Compressor:
    library = gzip_pb2.Gzip(
        memory_level=wrappers_pb2.UInt32Value(value=gzip.memory_level),
        window_bits=wrappers_pb2.UInt32Value(value=gzip.window_bits),
        chunk_size=wrappers_pb2.UInt32Value(value=gzip.chunk_size),
        compression_level=gzip_pb2.Gzip.CompressionLevel.Value(gzip.compression_level),
        compression_strategy=gzip_pb2.Gzip.CompressionStrategy.Value(gzip.compression_strategy),
    )
    return compressor_pb2.Compressor(
        response_direction_config=compressor_pb2.Compressor.ResponseDirectionConfig(
            common_config=compressor_pb2.Compressor.CommonDirectionConfig(
                min_content_length=wrappers_pb2.UInt32Value(value=gzip.min_content_length),
                content_type=list(gzip.content_type),
            ),
            disable_on_etag_header=gzip.disable_on_etag_header,
        ),
        request_direction_config=compressor_pb2.Compressor.RequestDirectionConfig(
            common_config=compressor_pb2.Compressor.CommonDirectionConfig(
                enabled=base_pb2.RuntimeFeatureFlag(
                    default_value=wrappers_pb2.BoolValue(value=False),
                    runtime_key=_REQUEST_COMPRESSION_RUNTIME_KEY,
                )
            )
        ),
        compressor_library=extension_pb2.TypedExtensionConfig(name=_GZIP_LIBRARY, typed_config=pack(library)),
    )


def _x_real_ip_filter() -> hcm.HttpFilter:
    # Higress adds `x-real-ip: %REQ(X-ENVOY-EXTERNAL-ADDRESS)%` to every route configuration; that header
    # is only set for clients outside the trusted (internal) ranges, so the peer address is used here: the
    # same value for external clients, and a value for internal ones too.
    mutation = mutation_rules_pb2.HeaderMutation(
        append=base_pb2.HeaderValueOption(
            header=base_pb2.HeaderValue(key="x-real-ip", value="%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
            append_action=base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD,
        )
    )
    config = header_mutation_pb2.HeaderMutation(
        mutations=header_mutation_pb2.Mutations(request_mutations=[mutation])
    )
    return hcm.HttpFilter(name=HEADER_MUTATION_FILTER, typed_config=pack(config))


def _tracing(tracing: TracingOptions) -> hcm.HttpConnectionManager.Tracing:
    provider = tracing.provider
    assert provider is not None
    cluster = provider.cluster_name
    timeout = duration_pb2.Duration()
    timeout.FromMilliseconds(tracing.timeout_ms)
    grpc = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=cluster), timeout=timeout
    )
    if provider.kind == "zipkin":
        name = "envoy.tracers.zipkin"
        config = pack(
            zipkin_pb2.ZipkinConfig(
                collector_cluster=cluster,
                collector_endpoint=_ZIPKIN_ENDPOINT,
                collector_hostname=_ZIPKIN_HOSTNAME,
                collector_endpoint_version=zipkin_pb2.ZipkinConfig.HTTP_JSON,
            )
        )
    elif provider.kind == "skywalking":
        name = "envoy.tracers.skywalking"
        config = pack(
            skywalking_pb2.SkyWalkingConfig(
                grpc_service=grpc,
                client_config=skywalking_pb2.ClientConfig(
                    service_name=_SERVICE_NAME, backend_token=provider.access_token
                ),
            )
        )
    else:
        name = "envoy.tracers.opentelemetry"
        config = pack(opentelemetry_pb2.OpenTelemetryConfig(grpc_service=grpc, service_name=_SERVICE_NAME))
    return hcm.HttpConnectionManager.Tracing(
        provider=http_tracer_pb2.Tracing.Http(name=name, typed_config=config),
        random_sampling=percent_pb2.Percent(value=tracing.sampling),
        # Higress sets the router's start_child_span (tracing.go), deprecated in Envoy since; this is its
        # replacement: a span of its own for each upstream request.
        spawn_upstream_span=wrappers_pb2.BoolValue(value=True),
    )
