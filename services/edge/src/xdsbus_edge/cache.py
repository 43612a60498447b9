"""The snapshot cache: the current Snapshot of every scope this edge follows, and who to tell when it
changes.

Scopes named at start are followed at once; any other scope a proxy asks for is followed from its
first request on. Streams register a callback per scope and are woken (never handed data) on every
switch: they read `current(scope)` themselves, so a stream that falls behind skips straight to the
newest version.

Scopes are bounded (docs/design.md §10, issue 13): an allow-list of names, a cap on how many are
followed at once, and a scope no stream has watched for the idle timeout is let go (its follower and
JetStream consumer stop), so random scope names cannot grow an edge's followers without end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import grpc

from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.secretbox import SecretBox
from xdsbus_edge.interfaces import ScopeRefused
from xdsbus_edge.ledger_follower import LedgerFollower, MissingBody
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
        on_missing: Callable[[MissingBody], None] | None = None,
        allowed_scopes: Iterable[str] = (),
        max_scopes: int = 64,
        idle_timeout: float = 300.0,
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
        # Hears of each body a version names that NATS does not hold (ledger_follower.MissingBody).
        self.on_missing = on_missing
        self._current: dict[str, Snapshot] = {}
        self._followers: dict[str, LedgerFollower] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, set[Callable[[], None]]] = {}
        self._loaded: dict[str, asyncio.Event] = {}
        # Scope limits (limits.EdgeLimits): which names a proxy may ask for (empty: any), how many are
        # followed at once, and when one no stream watches is let go. Scopes named at start are exempt.
        self.allowed = frozenset(allowed_scopes)
        self.max_scopes = max_scopes
        self.idle_timeout = idle_timeout
        self._idle_since: dict[str, float] = {}
        self._reaper: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start following the scopes named at start."""
        for scope in self.preload:
            self.follow(scope)
        if self.lazy and self.idle_timeout > 0:
            self._reaper = asyncio.create_task(self._release_idle(), name="release-idle-scopes")

    async def stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
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

    def lags(self) -> dict[str, float]:
        """Per followed scope, seconds its served version has been behind the ledger head."""
        return {scope: follower.lag() for scope, follower in self._followers.items()}

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
            on_missing=self.on_missing,
        )
        self._followers[scope] = follower
        self._tasks[scope] = asyncio.create_task(self._follow(follower), name=f"follow-{scope}")
        if scope not in self.preload and not self._watchers.get(scope):
            self._idle_since[scope] = time.monotonic()
        return True

    def _admit(self, scope: str) -> None:
        """Refuse a scope not in the allow-list, or a new one past the cap (ScopeRefused)."""
        if scope in self.preload or scope in self._followers:
            return
        if self.allowed and scope not in self.allowed:
            raise ScopeRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"scope {scope!r} is not served by this edge",
                "scope_not_allowed",
            )
        lazy_followed = sum(1 for s in self._followers if s not in self.preload)
        if lazy_followed >= self.max_scopes:
            raise ScopeRefused(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this edge follows {self.max_scopes} scopes already; scope {scope!r} is refused until one "
                "is idle",
                "too_many_scopes",
            )

    async def _release_idle(self) -> None:
        interval = min(max(self.idle_timeout / 4, 0.05), 30.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for scope, since in list(self._idle_since.items()):
                if now - since >= self.idle_timeout:
                    await self.release(scope)

    async def release(self, scope: str) -> None:
        """Stop following a scope no stream watches: its follower (and its JetStream consumer) ends and
        its snapshot is dropped; the next proxy that asks for it follows it again."""
        self._idle_since.pop(scope, None)
        if scope in self.preload or self._watchers.get(scope):
            return
        task = self._tasks.pop(scope, None)
        self._followers.pop(scope, None)
        self._current.pop(scope, None)
        self._loaded.pop(scope, None)
        self._watchers.pop(scope, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        log.info("scope %s released: no stream for %.0f s", scope, self.idle_timeout, extra={"scope": scope})

    def _held_elsewhere(self, key: ResourceKey, digest: bytes) -> CachedResource | None:
        """The resource if a served snapshot of any scope holds it: bodies are shared across scopes,
        so each is fetched and held once."""
        for snap in self._current.values():
            res = snap.of(key.type_url).get(key.name)
            if res is not None and res.peek_digest() == digest:
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
        self._admit(scope)
        if scope in self._idle_since:
            self._idle_since[scope] = time.monotonic()
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
        served = self._current.get(snapshot.scope)
        if served is not None:
            served.responses.close()  # no stream starts sending it any more
        self._current[snapshot.scope] = snapshot
        self._loaded.setdefault(snapshot.scope, asyncio.Event()).set()
        if self.on_switch:
            self.on_switch(snapshot)
        for wake in list(self._watchers.get(snapshot.scope, ())):
            wake()

    def watch(self, scope: str, wake: Callable[[], None]) -> None:
        self._watchers.setdefault(scope, set()).add(wake)
        self._idle_since.pop(scope, None)

    def unwatch(self, scope: str, wake: Callable[[], None]) -> None:
        watchers = self._watchers.get(scope)
        if watchers is not None:
            watchers.discard(wake)
            if not watchers and scope in self._followers and scope not in self.preload:
                self._idle_since[scope] = time.monotonic()

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
