"""How a WasmPlugin's module reaches Envoy (docs/wasm-plugins.md): the translator names a module by its
sha256, and Envoy fetches the bytes over HTTP from its edge, through a static cluster of its bootstrap.

Shared by the translator (which writes the wasm filter's remote data source), the edge (which serves
`/modules/<sha256>.wasm`), the watchers (which record a resolved digest in the event) and the bootstrap
generator (which defines the cluster)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, urlsplit

# The static cluster in Envoy's bootstrap that points at its edge's module server.
MODULES_CLUSTER = "xdsbus_wasm_modules"
# The authority Envoy sends on module requests; the edge's module server ignores it.
MODULES_AUTHORITY = "xdsbus-wasm-modules"
# Where a module with a given sha256 is served.
MODULES_PATH_PREFIX = "/modules/"
MODULE_SUFFIX = ".wasm"
# Envoy's fetch timeout for one module (the edge may have to pull it from its registry first).
FETCH_TIMEOUT_SECONDS = 10

# The key a watcher adds at the top level of a WasmPlugin's event body with what the plugin's url serves
# (xdsbus.wasm.facts): {"sha256": "<hex>", "url": "<pinned url>"}, or {"error": "<why>"} when it could
# not be fetched. It names the module of a plugin without spec.sha256.
RESOLVED_MODULE_KEY = "xdsbusModule"

_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_sha256(value: str) -> bool:
    """Whether `value` is a lower-case hex sha256, the only form a module is named by."""
    return _SHA256.fullmatch(value) is not None


def module_path(sha256: str) -> str:
    """The path the edge serves the module with this digest at."""
    return f"{MODULES_PATH_PREFIX}{sha256}{MODULE_SUFFIX}"


def module_uri(sha256: str, *, source: str = "", plugin: str = "") -> str:
    """The URI Envoy's remote data source fetches the module from (through MODULES_CLUSTER).

    `source` (where the module's bytes come from) and `plugin` (`<namespace>/<name>`) ride in the query:
    Envoy ignores it and verifies the bytes by sha256, while the edge learns from the ledger's wasm
    filters which sources it may fetch and whom to name when one fails."""
    uri = f"http://{MODULES_AUTHORITY}{module_path(sha256)}"
    query = "&".join(
        f"{name}={quote(value, safe='')}" for name, value in (("source", source), ("plugin", plugin)) if value
    )
    return f"{uri}?{query}" if query else uri


@dataclass(frozen=True)
class ModuleSource:
    """What a wasm filter's remote data source says about its module: its digest, where to fetch it and
    the plugin that uses it."""

    sha256: str
    source: str
    plugin: str


def parse_module_uri(uri: str) -> ModuleSource | None:
    """The module a `module_uri` names; None for a URI that is not one (another cluster's, no source)."""
    parts = urlsplit(uri)
    if parts.netloc != MODULES_AUTHORITY or not parts.path.startswith(MODULES_PATH_PREFIX):
        return None
    sha256 = parts.path.removeprefix(MODULES_PATH_PREFIX).removesuffix(MODULE_SUFFIX)
    query = parse_qs(parts.query)
    source = query.get("source", [""])[0]
    if not is_sha256(sha256) or not source:
        return None
    return ModuleSource(sha256=sha256, source=source, plugin=query.get("plugin", [""])[0])
