"""Every protobuf module whose messages the translator writes, so that a process that reads resources
without translating them (`xdsbus dump`, the edge's /debug/configz, the console) can render any message
packed in an Any. tests/translate/test_envoy_types.py checks that each proto module a translator module
imports is listed here."""

from __future__ import annotations

from types import ModuleType

from envoy.config.cluster.v3 import cluster_pb2 as config_cluster_pb2
from envoy.config.common.mutation_rules.v3 import mutation_rules_pb2 as config_common_mutation_rules_pb2
from envoy.config.core.v3 import address_pb2 as config_core_address_pb2
from envoy.config.core.v3 import base_pb2 as config_core_base_pb2
from envoy.config.core.v3 import config_source_pb2 as config_core_config_source_pb2
from envoy.config.core.v3 import extension_pb2 as config_core_extension_pb2
from envoy.config.core.v3 import grpc_service_pb2 as config_core_grpc_service_pb2
from envoy.config.core.v3 import health_check_pb2 as config_core_health_check_pb2
from envoy.config.core.v3 import http_uri_pb2 as config_core_http_uri_pb2
from envoy.config.core.v3 import protocol_pb2 as config_core_protocol_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as config_endpoint_endpoint_components_pb2
from envoy.config.endpoint.v3 import endpoint_pb2 as config_endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2 as config_listener_listener_components_pb2
from envoy.config.listener.v3 import listener_pb2 as config_listener_pb2
from envoy.config.rbac.v3 import rbac_pb2 as config_rbac_pb2
from envoy.config.route.v3 import route_components_pb2 as config_route_route_components_pb2
from envoy.config.route.v3 import route_pb2 as config_route_pb2
from envoy.config.route.v3 import scoped_route_pb2 as config_route_scoped_route_pb2
from envoy.config.trace.v3 import http_tracer_pb2 as config_trace_http_tracer_pb2
from envoy.config.trace.v3 import opentelemetry_pb2 as config_trace_opentelemetry_pb2
from envoy.config.trace.v3 import skywalking_pb2 as config_trace_skywalking_pb2
from envoy.config.trace.v3 import zipkin_pb2 as config_trace_zipkin_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as clusters_aggregate_cluster_pb2
from envoy.extensions.compression.gzip.compressor.v3 import gzip_pb2 as compression_gzip_compressor_gzip_pb2
from envoy.extensions.filters.http.compressor.v3 import compressor_pb2 as filters_http_compressor_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2 as filters_http_cors_pb2
from envoy.extensions.filters.http.custom_response.v3 import (
    custom_response_pb2 as filters_http_custom_response_pb2,
)
from envoy.extensions.filters.http.header_mutation.v3 import (
    header_mutation_pb2 as filters_http_header_mutation_pb2,
)
from envoy.extensions.filters.http.local_ratelimit.v3 import (
    local_rate_limit_pb2 as filters_http_local_ratelimit_local_rate_limit_pb2,
)
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2 as filters_http_rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2 as filters_http_router_pb2
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2 as filters_http_wasm_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import (
    tls_inspector_pb2 as filters_listener_tls_inspector_pb2,
)
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as filters_network_http_connection_manager_pb2,
)
from envoy.extensions.http.custom_response.redirect_policy.v3 import (
    redirect_policy_pb2 as http_custom_response_redirect_policy_pb2,
)
from envoy.extensions.http.early_header_mutation.header_mutation.v3 import (
    header_mutation_pb2 as http_early_header_mutation_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import common_pb2 as transport_sockets_tls_common_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2 as transport_sockets_tls_secret_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2 as transport_sockets_tls_pb2
from envoy.extensions.upstreams.http.v3 import (
    http_protocol_options_pb2 as upstreams_http_http_protocol_options_pb2,
)
from envoy.extensions.wasm.v3 import wasm_pb2 as wasm_pb2
from envoy.type.matcher.v3 import regex_pb2 as type_matcher_regex_pb2
from envoy.type.matcher.v3 import status_code_input_pb2 as type_matcher_status_code_input_pb2
from envoy.type.matcher.v3 import string_pb2 as type_matcher_string_pb2
from envoy.type.v3 import http_status_pb2 as type_http_status_pb2
from envoy.type.v3 import percent_pb2 as type_percent_pb2
from envoy.type.v3 import token_bucket_pb2 as type_token_bucket_pb2
from udpa.type.v1 import typed_struct_pb2 as udpa_type_typed_struct_pb2
from xds.core.v3 import extension_pb2 as xds_core_extension_pb2
from xds.type.matcher.v3 import matcher_pb2 as xds_type_matcher_pb2

PROTO_MODULES: tuple[ModuleType, ...] = (
    config_cluster_pb2,
    config_common_mutation_rules_pb2,
    config_core_address_pb2,
    config_core_base_pb2,
    config_core_config_source_pb2,
    config_core_extension_pb2,
    config_core_grpc_service_pb2,
    config_core_health_check_pb2,
    config_core_http_uri_pb2,
    config_core_protocol_pb2,
    config_endpoint_endpoint_components_pb2,
    config_endpoint_pb2,
    config_listener_listener_components_pb2,
    config_listener_pb2,
    config_rbac_pb2,
    config_route_route_components_pb2,
    config_route_pb2,
    config_route_scoped_route_pb2,
    config_trace_http_tracer_pb2,
    config_trace_opentelemetry_pb2,
    config_trace_skywalking_pb2,
    config_trace_zipkin_pb2,
    clusters_aggregate_cluster_pb2,
    compression_gzip_compressor_gzip_pb2,
    filters_http_compressor_pb2,
    filters_http_cors_pb2,
    filters_http_custom_response_pb2,
    filters_http_header_mutation_pb2,
    filters_http_local_ratelimit_local_rate_limit_pb2,
    filters_http_rbac_pb2,
    filters_http_router_pb2,
    filters_http_wasm_pb2,
    filters_listener_tls_inspector_pb2,
    filters_network_http_connection_manager_pb2,
    http_early_header_mutation_pb2,
    http_custom_response_redirect_policy_pb2,
    transport_sockets_tls_common_pb2,
    transport_sockets_tls_secret_pb2,
    transport_sockets_tls_pb2,
    upstreams_http_http_protocol_options_pb2,
    wasm_pb2,
    type_matcher_regex_pb2,
    type_matcher_status_code_input_pb2,
    type_matcher_string_pb2,
    type_http_status_pb2,
    type_percent_pb2,
    type_token_bucket_pb2,
    udpa_type_typed_struct_pb2,
    xds_core_extension_pb2,
    xds_type_matcher_pb2,
)
