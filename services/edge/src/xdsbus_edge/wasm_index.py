"""Which wasm modules the ledger names, and where each one comes from.

The translator's ECDS resources carry, in each wasm filter's remote data source, the module's sha256 and
a URI whose query says where its bytes come from and which plugin uses it (contract/wasm_modules.py).
The edge learns that here, per scope, from every snapshot it switches to, and fetches only sources some
followed scope names: the module port never fetches a URL a client made up.
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import extension_pb2
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError

from xdsbus.contract.wasm_modules import ModuleSource, parse_module_uri
from xdsbus_edge.snapshot import Snapshot

EXTENSION_CONFIG = f"type.googleapis.com/{extension_pb2.TypedExtensionConfig.DESCRIPTOR.full_name}"
_WASM = wasm_pb2.Wasm.DESCRIPTOR.full_name


def module_of(any_bytes: bytes) -> ModuleSource | None:
    """The module an ECDS resource (a serialized Any of a TypedExtensionConfig) fetches from the edge;
    None for other filters, inline or local code, or a URI that is not the edge's."""
    try:
        wrapper = any_pb2.Any.FromString(any_bytes)
        config = extension_pb2.TypedExtensionConfig.FromString(wrapper.value)
        if config.typed_config.type_url.rsplit("/", 1)[-1] != _WASM:
            return None
        wasm = wasm_pb2.Wasm.FromString(config.typed_config.value)
    except DecodeError:
        return None
    code = wasm.config.vm_config.code
    if not code.HasField("remote"):
        return None
    module = parse_module_uri(code.remote.http_uri.uri)
    if module is None or module.sha256 != code.remote.sha256:
        return None
    return module


class ModuleIndex:
    """sha256 -> where the module comes from, over every followed scope."""

    def __init__(self) -> None:
        # scope -> sha256 -> the modules naming it (one per plugin and source), in a fixed order.
        self._by_scope: dict[str, dict[str, list[ModuleSource]]] = {}
        # Per scope, each ECDS resource body's module, parsed once: a switch costs only what changed.
        self._parsed: dict[str, dict[str, ModuleSource | None]] = {}

    def update(self, snap: Snapshot, followed: Iterable[str] = ()) -> list[ModuleSource]:
        """Learn the modules of a scope's new snapshot, forgetting scopes no longer `followed` (when
        given); returns the modules no scope named before."""
        kept = {*followed, snap.scope}
        for scope in [s for s in self._by_scope if followed and s not in kept]:
            self.forget(scope)
        before = set(self.shas())
        known = self._parsed.get(snap.scope, {})
        parsed: dict[str, ModuleSource | None] = {}
        found: dict[str, set[ModuleSource]] = {}
        for resource in snap.of(EXTENSION_CONFIG).values():
            module = known[resource.sha256] if resource.sha256 in known else module_of(resource.body)
            parsed[resource.sha256] = module
            if module is not None:
                found.setdefault(module.sha256, set()).add(module)
        self._parsed[snap.scope] = parsed
        ordered = {sha: sorted(modules, key=lambda m: (m.plugin, m.source)) for sha, modules in found.items()}
        self._by_scope[snap.scope] = ordered
        return [ordered[sha][0] for sha in sorted(ordered) if sha not in before]

    def forget(self, scope: str) -> None:
        """A scope no longer followed."""
        self._by_scope.pop(scope, None)
        self._parsed.pop(scope, None)

    def plugins(self, sha256: str) -> list[str]:
        """Every plugin whose filters use the module, over every followed scope, sorted."""
        return sorted(
            {m.plugin for found in self._by_scope.values() for m in found.get(sha256, ()) if m.plugin}
        )

    def sources(self, sha256: str) -> list[str]:
        """Every source the followed scopes name for the module, in a fixed order (empty: none names
        it, and it is never fetched)."""
        return sorted({m.source for found in self._by_scope.values() for m in found.get(sha256, ())})

    def shas(self) -> set[str]:
        """Every module digest some followed scope names."""
        return {sha for modules in self._by_scope.values() for sha in modules}
