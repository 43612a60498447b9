"""Reading McpBridge objects: which one counts, and its registries entry by entry.

Shared by the registry watchers (which registries to run) and the builder (`dns` and `static` registries,
and the warnings on the McpBridge's status), so both always agree on what the McpBridge says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from xdsbus.model.mcpbridge import RegistryConfig

# Registry types Higress knows (docs/higress.md §2.1). `zookeeper` has no xdsbus watcher: it is reported.
WATCHED_TYPES = frozenset({"nacos", "nacos2", "nacos3", "consul", "eureka"})
BUILDER_TYPES = frozenset({"dns", "static"})
UNSUPPORTED_TYPES = frozenset({"zookeeper"})


class BridgeRegistries(msgspec.Struct, frozen=True):
    """The usable registries of one McpBridge by `type/name`, in spec order, and what was wrong with the
    others (each problem names `registries[i]` and, when known, the registry)."""

    configs: dict[str, RegistryConfig]
    problems: list[str]
    # `type/name` -> its index in spec.registries, for messages that point at the entry.
    index: dict[str, int] = {}


def winning_source(sources: Iterable[str]) -> str | None:
    """Of the sources holding the McpBridge, the one that counts: the first by name, so every replica and
    every replay picks the same one."""
    return min(sources, default=None)


def bridge_registries(body: Any) -> BridgeRegistries:
    """`spec.registries` of an McpBridge event body. Each entry is decoded on its own, so one malformed
    entry is reported and the others still apply; a repeated `type/name` keeps its first entry."""
    configs: dict[str, RegistryConfig] = {}
    problems: list[str] = []
    index: dict[str, int] = {}
    spec = body.get("spec") if isinstance(body, Mapping) else None
    entries = spec.get("registries") if isinstance(spec, Mapping) else None
    if entries is None:
        return BridgeRegistries(configs, problems, index)
    if not isinstance(entries, list):
        return BridgeRegistries(configs, ["spec.registries is not a list"], index)
    for i, entry in enumerate(entries):
        where = f"registries[{i}]"
        try:
            config = msgspec.convert(entry, RegistryConfig, strict=False)
        except msgspec.ValidationError as exc:
            name = entry.get("name") if isinstance(entry, Mapping) else None
            problems.append(f"{where}{f' ({name})' if name else ''}: {exc}")
            continue
        key = config.key
        if key in configs:
            problems.append(f"{where} ({key}): repeats registries[{index[key]}]; ignored")
            continue
        configs[key] = config
        index[key] = i
    return BridgeRegistries(configs, problems, index)


def type_problem(registry_type: str) -> str | None:
    """Why a registry of this type cannot be served, or None when some part of xdsbus serves it."""
    if registry_type in WATCHED_TYPES or registry_type in BUILDER_TYPES:
        return None
    if registry_type in UNSUPPORTED_TYPES:
        return f"type {registry_type!r} is not supported by xdsbus; ignored"
    known = ", ".join(sorted(WATCHED_TYPES | BUILDER_TYPES | UNSUPPORTED_TYPES))
    return f"unknown type {registry_type!r} (known: {known}); ignored"
