"""WasmPlugins as watch-k8s publishes them: when a plugin names no `spec.sha256`, its module is fetched
and its digest recorded in the body (xdsbus.wasm.resolver; docs/wasm-modules.md), with the plugin's
`imagePullSecret` read from the Secrets this watcher already holds (every Secret of the system
namespace, where WasmPlugins live)."""

from __future__ import annotations

import asyncio
import contextlib

from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus.wasm.resolver import ModuleResolver, docker_config_of_secret
from xdsbus_watch_k8s.publisher import Body, KindPublisher

# Seconds a plugin's resolution waits for the Secrets to be listed before it decides without them.
SECRETS_WAIT = 30.0
# Modules fetched at once when a list brings many plugins.
CONCURRENT_FETCHES = 4


class PluginModules:
    """Resolves the module digests of WasmPlugin bodies before they are published."""

    def __init__(self, secrets: KindPublisher | None) -> None:
        self.secrets = secrets
        self.resolver = ModuleResolver(ModuleFetcher())
        self._slots = asyncio.Semaphore(CONCURRENT_FETCHES)

    async def body(self, body: Body) -> Body:
        """`body` with its module digest recorded (see xdsbus.wasm.resolver)."""
        async with self._slots:
            return await self.resolver.resolve_plugin(body, self._pull_secret)

    async def bodies(self, objects: dict[str, Body]) -> dict[str, Body]:
        """Every body of a list with its module digest recorded, fetched a few at a time."""
        keys = sorted(objects)
        resolved = await asyncio.gather(*(self.body(objects[key]) for key in keys))
        return dict(zip(keys, resolved, strict=True))

    async def _pull_secret(self, namespace: str, name: str) -> bytes | None:
        if self.secrets is None:
            return None
        # Feeds list concurrently: a plugin listed before the Secrets must not miss its pull secret.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.secrets.synced.wait(), SECRETS_WAIT)
        secret = self.secrets.objects().get(f"{namespace}/{name}")
        return docker_config_of_secret(secret) if secret is not None else None
