"""Listeners from the route model: plaintext HTTP, and HTTPS choosing a certificate by SNI.

Every HTTP connection manager carries the same filter chain, so route configurations arriving through RDS
can use any per-route feature without the listener changing: each filter's base config is pass-through and
only routes with a per-route config are affected.
"""

from __future__ import annotations

import functools

from envoy.config.core.v3 import address_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.custom_response.v3 import custom_response_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2 as hcm
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from xdsbus.model.routes import DownstreamTls, HttpsListenerModel, ListenerModel, TlsFilterChainModel
from xdsbus.translate.envoy_common import ads_source, pack, sds_secret, tls_transport_socket
from xdsbus.translate.global_options.envoy_hcm import apply_to_connection_manager, apply_to_listener
from xdsbus.translate.global_options.model import DEFAULT_OPTIONS, GlobalOptions
from xdsbus.translate.route_tables import early_key_mutation, scoped_routes

# HTTP filter names; routes key their typed_per_filter_config by these.
CORS_FILTER = "envoy.filters.http.cors"
RBAC_FILTER = "envoy.filters.http.rbac"
CUSTOM_RESPONSE_FILTER = "envoy.filters.http.custom_response"
LOCAL_RATE_LIMIT_FILTER = "envoy.filters.http.local_ratelimit"
ROUTER_FILTER = "envoy.filters.http.router"

# Istio's stat prefix for the local rate limit it generates from Higress's route filter.
LOCAL_RATE_LIMIT_STAT_PREFIX = "http_local_rate_limiter"

_HCM_FILTER = "envoy.filters.network.http_connection_manager"
_TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"


def listener_name(port: int) -> str:
    """Istio/Higress naming: `0.0.0.0_<port>`."""
    return f"0.0.0.0_{port}"


def http_route_config_name(port: int) -> str:
    """Istio/Higress naming: `http.<port>`."""
    return f"http.{port}"


def https_route_config_name(port: int, name: str) -> str:
    """Istio/Higress naming of an HTTPS filter chain's routes: `https.<port>.<name>`."""
    return f"https.{port}.{name}"


def local_rate_limit_filter() -> hcm.HttpFilter:
    """Envoy's local rate limit without a bucket: it limits nothing until a route's typed_per_filter_config
    gives one (Higress route-limit-*, docs/higress.md §1.14)."""
    return hcm.HttpFilter(
        name=LOCAL_RATE_LIMIT_FILTER,
        typed_config=pack(local_rate_limit_pb2.LocalRateLimit(stat_prefix=LOCAL_RATE_LIMIT_STAT_PREFIX)),
    )


def _http_filters() -> list[hcm.HttpFilter]:
    # Order matters: CORS answers preflights before access control, RBAC refuses before anything is
    # forwarded, and custom_response must sit before the router to see its responses. The RBAC filter
    # without rules enforces nothing; routes with allowed source ranges override it per route.
    return [
        hcm.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors())),
        hcm.HttpFilter(name=RBAC_FILTER, typed_config=pack(rbac_pb2.RBAC())),
        hcm.HttpFilter(name=CUSTOM_RESPONSE_FILTER, typed_config=pack(custom_response_pb2.CustomResponse())),
        local_rate_limit_filter(),
        hcm.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router())),
    ]


# Everything of a connection manager but its stat prefix and route configuration name. An HTTPS listener
# has one manager per SNI chain (20k TLS hosts: 20k of them, rebuilt with the listener), so each is a copy
# of this rather than a build of its filters and typed configs. One per global options value (higress-config,
# docs/global-options.md), which adds its filters and settings.
@functools.lru_cache(maxsize=4)
def _manager_template(options: GlobalOptions) -> hcm.HttpConnectionManager:
    manager = hcm.HttpConnectionManager(
        codec_type=hcm.HttpConnectionManager.AUTO,
        rds=hcm.Rds(config_source=ads_source()),
        use_remote_address=wrappers_pb2.BoolValue(value=True),
        http_filters=_http_filters(),
        # Ingress controllers pass WebSocket upgrades through without per-route opt-in.
        upgrade_configs=[hcm.HttpConnectionManager.UpgradeConfig(upgrade_type="websocket")],
    )
    apply_to_connection_manager(manager, options)
    return manager


def _connection_manager(
    stat_prefix: str,
    route_config: str,
    options: GlobalOptions,
    plugins: tuple[hcm.HttpFilter, ...] = (),
    *,
    route_tables: int = 0,
    port: int = 0,
) -> listener_components_pb2.Filter:
    manager = hcm.HttpConnectionManager()
    manager.CopyFrom(_manager_template(options))
    manager.stat_prefix = stat_prefix
    if route_tables:
        # The split table (docs/route-table-split.md): the early header mutation names the request's
        # table before the route is first looked up.
        manager.ClearField("rds")
        manager.scoped_routes.CopyFrom(scoped_routes(port))
        manager.early_header_mutation_extensions.append(early_key_mutation())
    else:
        manager.rds.route_config_name = route_config
    if plugins:
        # The wasm plugins run last, right before the router, where Istio places plugins of no phase
        # (docs/wasm-plugins.md); their configurations come through ECDS.
        router = manager.http_filters.pop()
        manager.http_filters.extend([*plugins, router])
    return listener_components_pb2.Filter(name=_HCM_FILTER, typed_config=pack(manager))


def _address(port: int) -> address_pb2.Address:
    return address_pb2.Address(socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port))


def build_http_listener(
    model: ListenerModel,
    options: GlobalOptions = DEFAULT_OPTIONS,
    *,
    plugins: tuple[hcm.HttpFilter, ...] = (),
) -> listener_pb2.Listener:
    """A plaintext HTTP listener whose routes come through RDS (Scoped RDS when its route table is split),
    with the global options and the wasm plugins' filters."""
    listener = listener_pb2.Listener(
        name=model.name,
        address=_address(model.port),
        filter_chains=[
            listener_components_pb2.FilterChain(
                filters=[
                    _connection_manager(
                        model.name,
                        model.route_config,
                        options,
                        plugins,
                        route_tables=model.route_tables,
                        port=model.port,
                    )
                ]
            )
        ],
    )
    apply_to_listener(listener, options)
    return listener


def downstream_tls_context(tls: DownstreamTls) -> tls_pb2.DownstreamTlsContext:
    """Server-side TLS: the certificate and, for mutual TLS, the client CA, both through SDS."""
    common = tls_pb2.CommonTlsContext(
        tls_certificate_sds_secret_configs=[sds_secret(tls.cert_secret)],
        alpn_protocols=list(tls.alpn),
    )
    params = common_pb2.TlsParameters(cipher_suites=list(tls.cipher_suites))
    if tls.min_version:
        params.tls_minimum_protocol_version = common_pb2.TlsParameters.TlsProtocol.Value(tls.min_version)
    if tls.max_version:
        params.tls_maximum_protocol_version = common_pb2.TlsParameters.TlsProtocol.Value(tls.max_version)
    if params.ByteSize():
        common.tls_params.CopyFrom(params)
    if tls.client_ca_secret:
        common.validation_context_sds_secret_config.CopyFrom(sds_secret(tls.client_ca_secret))
        return tls_pb2.DownstreamTlsContext(
            common_tls_context=common, require_client_certificate=wrappers_pb2.BoolValue(value=True)
        )
    return tls_pb2.DownstreamTlsContext(common_tls_context=common)


def _tls_chains(chains: tuple[TlsFilterChainModel, ...]) -> list[tuple[list[str], TlsFilterChainModel]]:
    """Chains in server-name order, each with the names it keeps.

    Envoy refuses a listener where two chains match the same server name; the chain first in order keeps
    a contested name, and a chain left with none is dropped (an empty list would match every name).
    """
    taken: set[str] = set()
    out: list[tuple[list[str], TlsFilterChainModel]] = []
    for chain in sorted(chains, key=lambda c: (sorted(c.server_names), c.route_config)):
        names = sorted(set(chain.server_names) - taken)
        if chain.server_names and not names:
            continue
        if not chain.server_names and "" in taken:
            continue
        taken.update(names or [""])
        out.append((names, chain))
    return out


def build_https_listener(
    model: HttpsListenerModel,
    options: GlobalOptions = DEFAULT_OPTIONS,
    *,
    plugins: tuple[hcm.HttpFilter, ...] = (),
) -> listener_pb2.Listener:
    """A TLS listener with one filter chain per SNI group, each reading its own routes through RDS, with
    the global options and the wasm plugins' filters."""
    filter_chains = []
    for names, chain in _tls_chains(model.chains):
        filter_chains.append(
            listener_components_pb2.FilterChain(
                filter_chain_match=listener_components_pb2.FilterChainMatch(server_names=names),
                filters=[_connection_manager(model.name, chain.route_config, options, plugins)],
                transport_socket=tls_transport_socket(downstream_tls_context(chain.tls)),
            )
        )
    listener = listener_pb2.Listener(
        name=model.name,
        address=_address(model.port),
        listener_filters=[
            listener_components_pb2.ListenerFilter(
                name=_TLS_INSPECTOR, typed_config=pack(tls_inspector_pb2.TlsInspector())
            )
        ],
        filter_chains=filter_chains,
    )
    apply_to_listener(listener, options)
    return listener
