"""A scripted source: a Watcher whose facts the test dictates, published through the real base class."""

from __future__ import annotations

from typing import Any

from xdsbus.bus import Bus
from xdsbus.watcher import Watcher


class ScriptedSource(Watcher):
    """Publishes exactly what the test calls; `watch()` is a no-op resync of nothing."""

    def __init__(self, bus: Bus, source: str = "test/scripted") -> None:
        super().__init__(bus, source)

    async def watch(self) -> None:
        return None

    async def put(self, obj: dict[str, Any]) -> None:
        """Upsert a Kubernetes-style object under namespace/name."""
        meta = obj["metadata"]
        await self.upsert(obj["kind"], f"{meta.get('namespace', 'default')}/{meta['name']}", obj)

    async def remove(self, kind: str, key: str) -> None:
        await self.delete(kind, key)
