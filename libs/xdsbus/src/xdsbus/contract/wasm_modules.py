"""How a WasmPlugin's module reaches Envoy (docs/wasm-plugins.md): the translator names a module by its
sha256, and Envoy fetches the bytes over HTTP from its edge, through a static cluster of its bootstrap.

Shared by the translator (which writes the wasm filter's remote data source), the edge (which serves
`/modules/<sha256>.wasm`), the watchers (which record a resolved digest in the event) and the bootstrap
generator (which defines the cluster)."""

from __future__ import annotations

import re

# The static cluster in Envoy's bootstrap that points at its edge's module server.
MODULES_CLUSTER = "xdsbus_wasm_modules"
# The authority Envoy sends on module requests; the edge's module server ignores it.
MODULES_AUTHORITY = "xdsbus-wasm-modules"
# Where a module with a given sha256 is served.
MODULES_PATH_PREFIX = "/modules/"
MODULE_SUFFIX = ".wasm"
# Envoy's fetch timeout for one module (the edge may have to pull it from its registry first).
FETCH_TIMEOUT_SECONDS = 10

# The key a watcher adds at the top level of a WasmPlugin's event body when it resolved the module digest
# (spec.sha256 absent): {"sha256": "<hex>"} on success, {"error": "<why>"} when it could not.
RESOLVED_MODULE_KEY = "xdsbusModule"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: str) -> bool:
    """Whether `value` is a lower-case hex sha256, the only form a module is named by."""
    return _SHA256.fullmatch(value) is not None


def module_path(sha256: str) -> str:
    """The path the edge serves the module with this digest at."""
    return f"{MODULES_PATH_PREFIX}{sha256}{MODULE_SUFFIX}"


def module_uri(sha256: str) -> str:
    """The URI Envoy's remote data source fetches the module from (through MODULES_CLUSTER)."""
    return f"http://{MODULES_AUTHORITY}{module_path(sha256)}"
