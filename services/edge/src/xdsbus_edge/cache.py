"""The snapshot cache: the current Snapshot of every scope this edge follows, and who to tell when it
changes.

Scopes named at start are followed at once; any other scope a proxy asks for is followed from its
first request on. Streams register a callback per scope and are woken (never handed data) on every
switch: they read `current(scope)` themselves, so a stream that falls behind skips straight to the
newest version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import Any

from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.secretbox import SecretBox
from xdsbus_edge.ledger_follower import LedgerFollower
from xdsbus_edge.scopes import DEFAULT_SCOPE
from xdsbus_edge.snapshot import CachedResource, Snapshot

log = logging.getLogger(__name__)


class SnapshotCache:
    """Current snapshot per scope; followers feed it, streams read it (the edge's SnapshotSource,
    interfaces.py)."""

    def __init__(
        self,
        bus: Bus | None,
        *,
        scopes: Iterable[str] = (DEFAULT_SCOPE,),
        lazy: bool = True,
        lazy_wait: float = 2.0,
        on_switch: Callable[[Snapshot], None] | None = None,
        on_rejected: Callable[[str, int, str], None] | None = None,
        keyring: SecretBox | None = None,
        on_sealed: Callable[[str, int], None] | None = None,
    ) -> None:
        self.bus = bus
        self.preload = tuple(dict.fromkeys(scopes))
        self.lazy = lazy
        # How long a new stream for a scope not yet followed waits for its first version.
        self.lazy_wait = lazy_wait
        self.on_switch = on_switch
        self.on_rejected = on_rejected
        # Opens sealed Secret bodies (docs/design.md §5); on_sealed hears of each version it could not.
        self.keyring = keyring
        self.on_sealed = on_sealed
        self._current: dict[str, Snapshot] = {}
        self._followers: dict[str, LedgerFollower] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, set[Callable[[], None]]] = {}
        self._loaded: dict[str, asyncio.Event] = {}

    async def start(self) -> None:
        """Start following the scopes named at start."""
        for scope in self.preload:
            self.follow(scope)

    async def stop(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        for task in self._tasks.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()

    def current(self, scope: str) -> Snapshot | None:
        return self._current.get(scope)

    def ready(self) -> bool:
        """True once every scope named at start has a snapshot."""
        return all(scope in self._current for scope in self.preload)

    def scopes(self) -> list[str]:
        return sorted(set(self._current) | set(self._followers))

    def follower(self, scope: str) -> LedgerFollower | None:
        return self._followers.get(scope)

    def follow(self, scope: str) -> bool:
        """Start following a scope unless already; True if this call started it."""
        if scope in self._followers or self.bus is None:
            return False
        follower = LedgerFollower(
            self.bus,
            scope,
            self.set_snapshot,
            lookup=self._held_elsewhere,
            on_rejected=self.on_rejected,
            keyring=self.keyring,
            on_sealed=self.on_sealed,
        )
        self._followers[scope] = follower
        self._tasks[scope] = asyncio.create_task(self._follow(follower), name=f"follow-{scope}")
        return True

    def _held_elsewhere(self, key: ResourceKey, sha: str) -> CachedResource | None:
        """The resource if a served snapshot of any scope holds it: bodies are shared across scopes,
        so each is fetched and held once."""
        for snap in self._current.values():
            res = snap.of(key.type_url).get(key.name)
            if res is not None and res.sha256 == sha:
                return res
        return None

    async def _follow(self, follower: LedgerFollower) -> None:
        try:
            await follower.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("following scope %s failed", follower.scope)
            raise

    async def first_snapshot(self, scope: str) -> Snapshot | None:
        """The scope's snapshot for a new stream. A scope named at start is served only once loaded;
        another one is followed now (when lazy loading is on) and waited for up to `lazy_wait` seconds."""
        snap = self._current.get(scope)
        if snap is not None:
            return snap
        if scope in self.preload or not self.lazy:
            return None
        self.follow(scope)
        event = self._loaded.setdefault(scope, asyncio.Event())
        if self.lazy_wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.lazy_wait)
        return self._current.get(scope)

    def set_snapshot(self, snapshot: Snapshot) -> None:
        """Make `snapshot` current for its scope and wake its watchers."""
        self._current[snapshot.scope] = snapshot
        self._loaded.setdefault(snapshot.scope, asyncio.Event()).set()
        if self.on_switch:
            self.on_switch(snapshot)
        for wake in list(self._watchers.get(snapshot.scope, ())):
            wake()

    def watch(self, scope: str, wake: Callable[[], None]) -> None:
        self._watchers.setdefault(scope, set()).add(wake)

    def unwatch(self, scope: str, wake: Callable[[], None]) -> None:
        watchers = self._watchers.get(scope)
        if watchers is not None:
            watchers.discard(wake)

    def status(self) -> dict[str, Any]:
        """Per scope: the version served, the newest seen in the ledger, and why a newer one is not served."""
        out: dict[str, Any] = {}
        for scope in self.scopes():
            follower = self._followers.get(scope)
            if follower is not None:
                out[scope] = follower.status()
            else:
                snap = self._current[scope]
                out[scope] = {"scope": scope, "serving": snap.version, "resources": snap.resource_count()}
            out[scope]["preloaded"] = scope in self.preload
        return out
