"""Envoy bootstraps for proxies that take all their configuration from xdsbus edges over ADS.

Used by `xdsbus up` and by the test harness. The `xds` cluster lists every edge given: an active TCP
health check marks a dead edge unhealthy within about a second, so Envoy's reconnect goes to a live one.
Edges serve identical version strings, so that reconnect causes no configuration churn. With `tls` the
`xds` cluster speaks mTLS to the edges: it checks the edge's certificate against the CA and the server name,
and presents the proxy's own certificate (docs/design.md §10).

Stats: Envoy keeps about 150 stats per cluster, so at 20k clusters it creates and tracks millions that
nobody reads, which was a third of a cold start's CPU (bench/cold_load.py). The bootstrap creates a
cluster's traffic stats on its first request (`deferred_stat_options`) and keeps, per dynamic cluster,
only what dashboards and alerts read (`stats_options()`, the reasoning in docs/local-components.md §6),
like Istio's default inclusion list; every stat outside clusters and virtual hosts stays.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from xdsbus.contract.wasm_modules import MODULES_CLUSTER

ApiType = Literal["GRPC", "DELTA_GRPC"]

XDS_CLUSTER = "xds"
_HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
_UPSTREAM_TLS = "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
# The DNS name of the edge's server certificate (the TLS SNI and the name Envoy checks).
EDGE_SERVER_NAME = "xdsbus-edge"

# Stat names kept whole: every family but the per-cluster (`cluster.<name>.`) and per-virtual-host
# (`vhost.<name>.`) ones, and the static clusters of the bootstrap itself.
KEPT_STAT_PREFIXES = (
    "cluster_manager.",
    "listener_manager.",
    "listener.",
    "http.",
    "http1.",
    "http2.",
    "http3.",
    "server.",
    "control_plane.",
    "runtime.",
    "overload.",
    "sds.",
    "tcp.",
    "udp.",
    "tls_inspector.",
    "http_inspector.",
    "main_thread.",
    "workers.",
    "filesystem.",
    "dns.",
    "dns_cache.",
    "wasm",
    f"cluster.{XDS_CLUSTER}.",
    f"cluster.{MODULES_CLUSTER}.",
)
# Per dynamic cluster, what dashboards and alerts read: requests and connections (totals, in flight,
# response classes), the failures an operator acts on (timeouts, retries, overflow of the circuit
# breakers, connect failures, no healthy host), membership and health, and rejected EDS updates.
KEPT_CLUSTER_STATS = (
    "upstream_rq_total",
    "upstream_rq_active",
    "upstream_rq_pending_active",
    "upstream_rq_1xx",
    "upstream_rq_2xx",
    "upstream_rq_3xx",
    "upstream_rq_4xx",
    "upstream_rq_5xx",
    "upstream_rq_timeout",
    "upstream_rq_per_try_timeout",
    "upstream_rq_retry",
    "upstream_rq_pending_overflow",
    "upstream_cx_total",
    "upstream_cx_active",
    "upstream_cx_connect_fail",
    "upstream_cx_connect_timeout",
    "upstream_cx_none_healthy",
    "membership_healthy",
    "membership_degraded",
    "membership_total",
    "health_check.healthy",
    "health_check.failure",
    "outlier_detection.ejections_active",
    "update_rejected",
)


def stats_options() -> dict[str, Any]:
    """The bootstrap's stats settings: traffic stats created on first use, and the inclusion list."""
    patterns = [{"prefix": prefix} for prefix in KEPT_STAT_PREFIXES]
    patterns += [{"suffix": f".{name}"} for name in KEPT_CLUSTER_STATS]
    return {
        "deferred_stat_options": {"enable_deferred_creation_stats": True},
        "stats_config": {"stats_matcher": {"inclusion_list": {"patterns": patterns}}},
    }


@dataclass(frozen=True)
class ClientTls:
    """A proxy's side of mTLS to the edges: the CA that signs the edge's certificate, its own certificate
    and key (None: TLS without a client certificate), and the server name to check."""

    ca_file: Path
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str = EDGE_SERVER_NAME


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`) into (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def ads_bootstrap(
    *,
    edges: Sequence[tuple[str, int]],
    admin_port: int,
    node_id: str = "gateway-1",
    node_cluster: str = "higress-gateway",
    scope: str = "default",
    gateway: str = "",
    api_type: ApiType = "GRPC",
    admin_address: str = "127.0.0.1",
    health_check_interval: float = 1.0,
    initial_fetch_timeout: float | None = None,
    tls: ClientTls | None = None,
    wasm_modules: Sequence[tuple[str, int]] = (),
) -> dict[str, Any]:
    """A bootstrap: node (id, cluster, metadata XDSBUS_SCOPE, and XDSBUS_GATEWAY `<namespace>/<name>` for
    a Gateway's own data plane when `gateway` is given), admin, ADS over the `xds` cluster for CDS and
    LDS. `api_type` GRPC is State of the World, DELTA_GRPC incremental; `tls`: (m)TLS to the edges, else
    plaintext (edges allow that on loopback only). `wasm_modules`: the edges' module ports (--wasm-listen),
    the static cluster WasmPlugin filters fetch their modules through (docs/wasm-modules.md)."""
    if not edges:
        raise ValueError("at least one edge address is needed")
    if api_type not in ("GRPC", "DELTA_GRPC"):
        raise ValueError(f"api_type must be GRPC or DELTA_GRPC, not {api_type!r}")
    interval = f"{health_check_interval:g}s"
    ads_source: dict[str, Any] = {"ads": {}, "resource_api_version": "V3"}
    if initial_fetch_timeout is not None:
        ads_source["initial_fetch_timeout"] = f"{initial_fetch_timeout:g}s"
    return {
        **stats_options(),
        "node": {
            "id": node_id,
            "cluster": node_cluster,
            "metadata": {"XDSBUS_SCOPE": scope, **({"XDSBUS_GATEWAY": gateway} if gateway else {})},
        },
        "admin": {"address": {"socket_address": {"address": admin_address, "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": api_type,
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [
                    {
                        "envoy_grpc": {
                            "cluster_name": XDS_CLUSTER,
                            # Reconnect soon after an edge goes away (Envoy's default backs off to 30 s).
                            "retry_policy": {
                                "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}
                            },
                        }
                    }
                ],
            },
            "cds_config": ads_source,
            "lds_config": ads_source,
        },
        "static_resources": {
            "clusters": [
                {
                    "name": XDS_CLUSTER,
                    "type": "STATIC",
                    "connect_timeout": "1s",
                    "typed_extension_protocol_options": {
                        _HTTP_OPTIONS: {
                            "@type": f"type.googleapis.com/{_HTTP_OPTIONS}",
                            "explicit_http_config": {
                                "http2_protocol_options": {
                                    "connection_keepalive": {"interval": "5s", "timeout": "5s"}
                                }
                            },
                        }
                    },
                    # Never route the ADS stream to an edge known dead while another is healthy, and keep
                    # trying the dead ones when every edge is down.
                    "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
                    "health_checks": [
                        {
                            "timeout": "1s",
                            "interval": interval,
                            "no_traffic_interval": interval,
                            "no_traffic_healthy_interval": interval,
                            "unhealthy_threshold": 1,
                            "healthy_threshold": 1,
                            "tcp_health_check": {},
                        }
                    ],
                    **({"transport_socket": xds_transport_socket(tls)} if tls is not None else {}),
                    "load_assignment": {
                        "cluster_name": XDS_CLUSTER,
                        "endpoints": [
                            {
                                "lb_endpoints": [
                                    {
                                        "endpoint": {
                                            "address": {
                                                "socket_address": {"address": host, "port_value": port}
                                            }
                                        }
                                    }
                                    for host, port in edges
                                ]
                            }
                        ],
                    },
                },
                *([wasm_modules_cluster(wasm_modules, interval)] if wasm_modules else []),
            ]
        },
    }


def wasm_modules_cluster(
    addresses: Sequence[tuple[str, int]], health_check_interval: str = "1s"
) -> dict[str, Any]:
    """The static cluster `xdsbus_wasm_modules`: plain HTTP/1.1 to the edges' module ports, loopback or
    in-cluster (modules are verified by sha256, so the channel needs no TLS for integrity). A TCP health
    check keeps a fetch off an edge that is gone."""
    return {
        "name": MODULES_CLUSTER,
        "type": "STATIC",
        "connect_timeout": "1s",
        "health_checks": [
            {
                "timeout": "1s",
                "interval": health_check_interval,
                "no_traffic_interval": health_check_interval,
                "unhealthy_threshold": 1,
                "healthy_threshold": 1,
                "tcp_health_check": {},
            }
        ],
        "load_assignment": {
            "cluster_name": MODULES_CLUSTER,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": host, "port_value": port}}}}
                        for host, port in addresses
                    ]
                }
            ],
        },
    }


def xds_transport_socket(tls: ClientTls) -> dict[str, Any]:
    """The `xds` cluster's TLS transport socket: verify the edge (CA and server name), present the proxy's
    certificate when it has one."""
    common: dict[str, Any] = {
        "alpn_protocols": ["h2"],
        "validation_context": {
            "trusted_ca": {"filename": str(tls.ca_file)},
            "match_typed_subject_alt_names": [{"san_type": "DNS", "matcher": {"exact": tls.server_name}}],
        },
    }
    if tls.cert_file is not None and tls.key_file is not None:
        common["tls_certificates"] = [
            {
                "certificate_chain": {"filename": str(tls.cert_file)},
                "private_key": {"filename": str(tls.key_file)},
            }
        ]
    return {
        "name": "envoy.transport_sockets.tls",
        "typed_config": {
            "@type": f"type.googleapis.com/{_UPSTREAM_TLS}",
            "sni": tls.server_name,
            "common_tls_context": common,
        },
    }


def write_bootstrap(path: Path, bootstrap: dict[str, Any]) -> Path:
    """Write a bootstrap as JSON (valid YAML too, so the file may be named .yaml)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(bootstrap, indent=2) + "\n")
    return path
