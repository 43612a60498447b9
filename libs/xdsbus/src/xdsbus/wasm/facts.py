"""The module digest a watcher found at a WasmPlugin's url, recorded in the event body as a fact
(docs/design.md §6, docs/wasm-modules.md): a plugin without `spec.sha256` is named by it, so every ledger
version names exact module bytes and a replay serves the same module whatever the plugin's tag points at
today; for a plugin with `spec.sha256` it says whether the module matches.

Pure data, no I/O: the translator reads it, the watchers write it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from xdsbus.contract.wasm_modules import RESOLVED_MODULE_KEY, is_sha256


class ResolvedModule(msgspec.Struct, frozen=True, omit_defaults=True):
    """What resolving a plugin's module found: its sha256 and the URL those bytes are pinned at (an OCI
    image by manifest digest; the plugin's own URL otherwise), or why it could not be resolved."""

    sha256: str = ""
    url: str = ""
    error: str = ""


def resolved_module(body: Mapping[str, Any]) -> ResolvedModule | None:
    """The resolved module recorded in a WasmPlugin event body; None when there is none (no url, or an
    event written before watchers recorded it) or when what is recorded is not a well-formed fact."""
    fact = body.get(RESOLVED_MODULE_KEY)
    if not isinstance(fact, Mapping):
        return None
    try:
        module = msgspec.convert(fact, ResolvedModule)
    except msgspec.ValidationError:
        return None
    if module.sha256 and not is_sha256(module.sha256):
        return None
    if not module.sha256 and not module.error:
        return None
    return module


def with_resolved(body: Mapping[str, Any], module: ResolvedModule | None) -> dict[str, Any]:
    """`body` with `module` recorded in it, or with any recorded fact removed when `module` is None (a
    user-written key of that name never passes for a watcher's fact)."""
    out = {key: value for key, value in body.items() if key != RESOLVED_MODULE_KEY}
    if module is not None:
        out[RESOLVED_MODULE_KEY] = msgspec.to_builtins(module)
    return out
