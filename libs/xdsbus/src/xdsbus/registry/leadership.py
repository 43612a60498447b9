"""One publishing replica per registry watcher service: a lease in KV `xdsbus_leases`.

Every replica follows McpBridge; only the holder of the lease `watch-<type>.<group>` runs registries (and
each registry publishes only while it also holds its source lease `watch.<type>.<name>`, which gives its
events their term: see supervisor.py). A restarted replica of the same identity takes the group lease back
at once.
When it gains the lease it waits until its follower has read the log, clears the services of registries
that are no longer configured (removed while nobody led), then keeps the running registries in line with
McpBridge. When it loses the lease (or stops) its registries stop, keeping what they published; the next
holder's registries start with a resync, which reconciles. So two replicas produce one set of events; what
the old and new holder both publish is stored twice and folded once (the fold ignores an upsert equal in
revision and body to what it holds).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from nats.errors import Error as NatsError

from xdsbus.bus import Bus
from xdsbus.lease import Lease
from xdsbus.registry.bridge_follower import BridgeFollower
from xdsbus.registry.supervisor import Supervisor, published_sources

log = logging.getLogger(__name__)


def lease_name(service: str, group: str) -> str:
    """The lease of one registry watcher service and instance group: `watch-nacos.default`."""
    return f"{service}.{group}"


class Leadership:
    """Runs the supervisor while holding the lease; stands by otherwise."""

    def __init__(
        self,
        bus: Bus,
        name: str,
        holder: str,
        follower: BridgeFollower,
        supervisor: Supervisor,
        *,
        ttl: float,
        stop: asyncio.Event,
    ) -> None:
        self.lease = Lease(bus, name, holder, ttl, reclaim=True)
        self.bus = bus
        self.follower = follower
        self.supervisor = supervisor
        self.stop = stop
        self.leading = asyncio.Event()
        # The follower generation last applied to the supervisor (0: none yet), for observers.
        self.applied = 0

    async def run(self) -> None:
        """Take the lease, lead while holding it, stand by when it is lost; until `stop`."""
        while not self.stop.is_set():
            if not await self.lease.acquire(self.stop):
                return
            log.info("leading: running the registries of McpBridge (lease %s)", self.lease.name)
            self.leading.set()
            try:
                await self._lead()
            finally:
                self.leading.clear()
                await self.supervisor.stop_all()
                await self.lease.release()
            if not self.stop.is_set():
                log.warning("lost the lease %s: registries stopped; standing by", self.lease.name)

    async def _lead(self) -> None:
        if not await self._until(self.follower.ready.wait()):
            return
        await self._clear_stale()
        generation = -1
        while not (self.stop.is_set() or self.lease.lost.is_set()):
            if self.follower.generation != generation:
                generation = self.follower.generation
                await self.supervisor.reconcile(self.follower.desired())
                self.applied = generation
            await self._until(self.follower.wait_changed(generation))

    async def _clear_stale(self) -> None:
        """Services of registries of our types that McpBridge no longer lists go away, as Higress purges
        stale ServiceEntries after a reconcile. Only when the log says something about McpBridge: a log
        whose McpBridge aged out must not wipe every registry."""
        if not self.follower.evidence:
            return
        desired = self.follower.desired()
        try:
            sources = await published_sources(self.bus, self.follower.types)
        except (NatsError, TimeoutError) as exc:
            log.warning("cannot list the registries that published services (%s); skipping cleanup", exc)
            return
        await self.supervisor.clear_sources(s for s in sources if s not in desired)

    async def _until(self, awaitable: Awaitable[None]) -> bool:
        """Wait for `awaitable`, `stop` or the loss of the lease; True when `awaitable` finished."""
        waiting = asyncio.ensure_future(awaitable)
        stopping = asyncio.ensure_future(self.stop.wait())
        losing = asyncio.ensure_future(self.lease.lost.wait())
        try:
            await asyncio.wait({waiting, stopping, losing}, return_when=asyncio.FIRST_COMPLETED)
            return waiting.done()
        finally:
            for future in (waiting, stopping, losing):
                future.cancel()
