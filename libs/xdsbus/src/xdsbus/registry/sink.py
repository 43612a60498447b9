"""`RegistrySink` on the Watcher base: a registry client's reports become `RegistryService` events.

Source `<type>/<name>`, kind `RegistryService`, key the Higress hostname, body the `RegistryService` with
its endpoints sorted by (address, port), so equal content gives equal bytes and an equal `rev`, which
the fold ignores when it holds them already. The Watcher base gives resync epochs, attempt ids (a retry
is stored once) and publishing until JetStream acknowledges. A hostname whose body did not change since
this sink last published it is not published again: registries relist every 30 s and would otherwise
grow the log with copies.

The sink publishes only while it holds its source lease `watch.<type>.<registry name>` (docs/design.md
§4), which the supervisor takes with `lead()` before it runs the registry; its events carry the lease's
term. A new term forgets what was published before, so the registry's first resync publishes everything.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from xdsbus.bus import Bus
from xdsbus.lease import Lease
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import REGISTRY_SERVICE_KIND, RegistryEndpoint, RegistryService
from xdsbus.registry.status import RegistryStatus
from xdsbus.watcher import Watcher, content_rev


class _Publisher(Watcher):
    """The Watcher base used for publishing only: the registry client drives, not a watch loop."""

    async def watch(self) -> None:
        raise NotImplementedError("a registry's events are driven by its client, see EventSink")


class EventSink:
    """Publishes what one registry client reports (implements `xdsbus.registry.api.RegistrySink`).

    Calls are serialized: an upsert made while a resync is publishing lands after that resync's
    sync_end, so the resync (listed before the upsert) cannot remove what the upsert added."""

    def __init__(
        self,
        bus: Bus,
        config: RegistryConfig,
        status: RegistryStatus,
        *,
        stop: asyncio.Event | None = None,
        instance_id: str | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self.config = config
        self.source = config.key
        self.status = status
        self._publisher = _Publisher(
            bus, self.source, stop=stop, instance_id=instance_id, lease_ttl=lease_ttl
        )
        self._lock = asyncio.Lock()
        # hostname -> content revision this sink last published for it
        self._published: dict[str, str] = {}
        # Completed resyncs: the supervisor resets its retry backoff when a run got this far.
        self.resyncs = 0

    # -- the source lease ------------------------------------------------------------------------

    @property
    def lease(self) -> Lease:
        """The source lease `watch.<type>.<name>`; its `lost` is set when a renewal is refused."""
        return self._publisher.lease

    @property
    def term(self) -> int:
        """The term this sink publishes under: the lease's revision when it last took it (0: never)."""
        return self._publisher.term

    async def lead(self, stop: asyncio.Event | None = None) -> bool:
        """Wait for the source lease (True) or `stop` (False); the new term publishes everything again."""
        if not await self._publisher.lead(stop):
            return False
        self._published = {}
        return True

    async def release(self) -> None:
        """Give the source lease back (nothing when it was lost), so that another replica can lead."""
        await self._publisher.release()

    # -- RegistrySink ---------------------------------------------------------------------------

    async def resync(self, services: Sequence[RegistryService]) -> None:
        """Everything the registry holds now; hostnames not listed are removed by the builder."""
        bodies: dict[str, dict[str, object]] = {}
        for service in services:
            normalized = self._normalize(service)
            if normalized is None:
                continue
            hostname, body = normalized
            if hostname in bodies:
                self.problem(hostname, "listed twice in one resync; the first listing is used")
                continue
            bodies[hostname] = body
        async with self._lock:
            epoch = await self._publisher.begin_sync([REGISTRY_SERVICE_KIND])
            for hostname in sorted(bodies):
                await self._upsert(hostname, bodies[hostname])
            await self._publisher.end_sync(epoch, {REGISTRY_SERVICE_KIND: bodies.keys()})
            self._published = {h: rev for h, rev in self._published.items() if h in bodies}
        self.resyncs += 1
        self.status.resynced()

    async def upsert(self, service: RegistryService) -> None:
        """One service's current state."""
        normalized = self._normalize(service)
        if normalized is None:
            return
        async with self._lock:
            await self._upsert(*normalized)

    async def delete(self, hostname: str) -> None:
        """A service the registry no longer has (published even when this sink never published it: a
        previous replica may have)."""
        async with self._lock:
            await self._publisher.delete(REGISTRY_SERVICE_KIND, hostname)
            self._published.pop(hostname, None)

    def answered(self) -> None:
        """The registry answered: its source lag counts from now."""
        self._publisher.source_seen()

    def problem(self, what: str, reason: str) -> None:
        """Garbage from the registry: logged, and shown in the registry's status."""
        self.status.problem(what, reason)

    # -- the machinery's own calls --------------------------------------------------------------

    async def clear(self) -> None:
        """An empty resync: every service of this source goes away (the registry left McpBridge)."""
        async with self._lock:
            epoch = await self._publisher.begin_sync([REGISTRY_SERVICE_KIND])
            await self._publisher.end_sync(epoch, {REGISTRY_SERVICE_KIND: []})
            self._published = {}

    # -- internals ------------------------------------------------------------------------------

    async def _upsert(self, hostname: str, body: dict[str, object]) -> None:
        rev = content_rev(body)
        if self._published.get(hostname) == rev:
            return
        # A refused upsert (reported by the publisher) is tried again with the next change or resync.
        if await self._publisher.upsert(REGISTRY_SERVICE_KIND, hostname, body, rev):
            self._published[hostname] = rev

    def _normalize(self, service: RegistryService) -> tuple[str, dict[str, object]] | None:
        """The hostname and event body of a service: endpoints sorted by (address, port), one per
        address and port, and the registry named as this sink's."""
        hostname = service.hostname
        if not hostname or any(c.isspace() for c in hostname):
            self.problem(hostname or repr(service.service), "no usable hostname; service ignored")
            return None
        seen: dict[tuple[str, int], RegistryEndpoint] = {}
        for endpoint in sorted(service.endpoints, key=lambda ep: (ep.address, ep.port)):
            if (endpoint.address, endpoint.port) in seen:
                self.problem(
                    f"{hostname} instance {endpoint.address}:{endpoint.port}",
                    "listed twice; the first listing is used",
                )
                continue
            seen[(endpoint.address, endpoint.port)] = endpoint
        normalized = msgspec.structs.replace(
            service,
            registry_type=self.config.type,
            registry=self.config.name,
            endpoints=list(seen.values()),
        )
        body: dict[str, object] = msgspec.to_builtins(normalized)
        return hostname, body
