"""A static Envoy bootstrap with wasm HTTP filters in front of a direct response: the module and its
configuration checked by a real Envoy without any control plane."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from xdsbus.contract.wasm_modules import MODULES_CLUSTER
from xdsbus_dev.harness.processes import tool

WASM = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm"
HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
STRING_VALUE = "type.googleapis.com/google.protobuf.StringValue"


def wasm_filter(
    name: str, code: dict[str, Any], config: dict[str, str], *, fail_open: bool = False
) -> dict[str, Any]:
    """A wasm HTTP filter running the V8 runtime; `config` is handed to the module as JSON."""
    return {
        "name": name,
        "typed_config": {
            "@type": WASM,
            "config": {
                "name": name,
                "failure_policy": "FAIL_OPEN" if fail_open else "FAIL_CLOSED",
                "vm_config": {"vm_id": "tests", "runtime": "envoy.wasm.runtime.v8", "code": code},
                "configuration": {"@type": STRING_VALUE, "value": json.dumps(config)},
            },
        },
    }


def _listener(name: str, port: int, filters: list[dict[str, Any]]) -> dict[str, Any]:
    hcm = {
        "@type": HCM,
        "stat_prefix": name,
        "route_config": {
            "virtual_hosts": [
                {
                    "name": "all",
                    "domains": ["*"],
                    "routes": [
                        {
                            "match": {"prefix": "/"},
                            "direct_response": {"status": 200, "body": {"inline_string": "ok"}},
                        }
                    ],
                }
            ]
        },
        "http_filters": [*filters, {"name": "envoy.filters.http.router", "typed_config": {"@type": ROUTER}}],
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcm}]}
        ],
    }


def bootstrap(
    admin_port: int, listeners: dict[int, list[dict[str, Any]]], modules_port: int = 0
) -> dict[str, Any]:
    """Admin, one listener per port answering 200 "ok" to everything through its filters, and (with
    `modules_port`) the module cluster pointing at a local HTTP server."""
    clusters = []
    if modules_port:
        clusters.append(
            {
                "name": MODULES_CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": MODULES_CLUSTER,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": "127.0.0.1",
                                                "port_value": modules_port,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
        )
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
        "static_resources": {
            "listeners": [
                _listener(f"wasm_test_{port}", port, filters) for port, filters in sorted(listeners.items())
            ],
            "clusters": clusters,
        },
    }


def start_envoy(bootstrap_path: Path, log: Path) -> subprocess.Popen[bytes]:
    """Envoy on a static bootstrap, its output appended to `log`."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                tool("envoy"),
                "-c",
                str(bootstrap_path),
                "--disable-hot-restart",
                "--log-level",
                "warn",
                "--concurrency",
                "1",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
