"""WasmPlugins as watch-file publishes them: when a plugin names no `spec.sha256`, its module is fetched
and its digest recorded in the body (xdsbus.wasm.resolver; docs/wasm-modules.md), with the
`imagePullSecret` read from a Secret manifest of the same directory."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from xdsbus.wasm.resolver import ModuleResolver, docker_config_of_secret
from xdsbus.watcher import content_rev
from xdsbus_watch_file.manifests import Manifest, ObjectId, object_key

WASM_PLUGIN = "WasmPlugin"


async def published_body(
    resolver: ModuleResolver, manifest: Manifest, desired: Mapping[ObjectId, Manifest]
) -> tuple[dict[str, Any], str]:
    """The body and rev to publish for `manifest`: as read for every kind but WasmPlugin, whose module
    digest is resolved first (its rev then covers the recorded digest)."""
    if manifest.id.kind != WASM_PLUGIN:
        return manifest.body, manifest.rev

    async def pull_secret(namespace: str, name: str) -> bytes | None:
        secret = desired.get(ObjectId("Secret", object_key("Secret", name, namespace)))
        return docker_config_of_secret(secret.body) if secret is not None else None

    body = await resolver.resolve_plugin(manifest.body, pull_secret)
    return body, content_rev(body)
