"""Running one task per configured registry, as Higress' McpBridge reconcile does.

`reconcile(desired)` diffs by `type/name`: a new registry is started, a changed one (its config, or the
Secret it reads credentials from) is stopped and recreated, and a removed one is stopped and then
cleared with an empty resync of its source, so its services go away. A registry whose `run` raises is
retried with backoff and nothing it published is withdrawn meanwhile: an outage never removes endpoints.
A run that failed because the server refused the connection (down or restarting) is retried within
`PROBE_CAP` however long the outage, so the first change after the server returns is not held back by a
backoff step the outage grew (issue 14).
`stop_all()` stops every registry without clearing anything (this replica stops leading; another one
takes over and its first resync reconciles).

Each registry runs only while its sink holds the source lease `watch.<type>.<name>` (docs/design.md §4):
the task waits for it, runs the registry (whose first act is a resync), and when a renewal is refused
cancels the registry at once and waits for the lease again. Clearing a source publishes under its lease
too, taken for the purpose (or skipped, with a warning, if another replica keeps it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

import msgspec
from nats.js.errors import NotFoundError

from xdsbus.backoff import Backoff
from xdsbus.bus import Bus
from xdsbus.cancelling import cancel_until_done
from xdsbus.events import (
    EVENTS_STREAM,
    EVENTS_SUBJECT_PREFIX,
    MalformedEvent,
    Op,
    SyncEnd,
    decode,
    subject_token,
)
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.registry.api import Credentials, Registry
from xdsbus.registry.sink import EventSink
from xdsbus.registry.status import RegistryStatus

log = logging.getLogger(__name__)

RegistryFactory = Callable[[RegistryConfig, Credentials], Registry]

# How long a stopping registry may take to finish its cancellation (close its connections).
STOP_TIMEOUT = 10.0
# The longest wait before trying a registry that refused the connection again: a refused connection costs
# the server nothing, and the first change after it restarts must not wait a backoff step the outage grew.
PROBE_CAP = 1.0


class VersionedCredentials(Credentials, Protocol):
    """Credentials that can tell when a Secret changed (BridgeFollower's)."""

    def revision(self, secret_name: str) -> str:
        """Changes whenever the Secret does."""


@dataclasses.dataclass
class _Running:
    config: RegistryConfig
    fingerprint: bytes
    sink: EventSink
    status: RegistryStatus
    task: asyncio.Task[None]


class Supervisor:
    """Starts, restarts and stops registry tasks to match the desired set."""

    def __init__(
        self,
        bus: Bus,
        factory: RegistryFactory,
        credentials: VersionedCredentials,
        *,
        stop: asyncio.Event | None = None,
        retry_base: float = 0.5,
        retry_cap: float = 30.0,
        instance_id: str | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        self.bus = bus
        self.instance_id = instance_id
        self.lease_ttl = lease_ttl or bus.settings.lease_ttl
        self.factory = factory
        self.credentials = credentials
        self.stop = stop or asyncio.Event()
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()

    @property
    def running(self) -> dict[str, RegistryConfig]:
        """The registries running now, by `type/name`."""
        return {key: r.config for key, r in self._running.items()}

    def _fingerprint(self, config: RegistryConfig) -> bytes:
        revision = self.credentials.revision(config.auth_secret_name)
        return msgspec.msgpack.encode((config, revision), order="sorted")

    async def reconcile(self, desired: Mapping[str, RegistryConfig]) -> None:
        """Make the running registries those of `desired` (keyed `type/name`)."""
        async with self._lock:
            for key in sorted(set(self._running) - set(desired)):
                running = self._running.pop(key)
                log.info("registry %s removed from McpBridge: stopping it and removing its services", key)
                await self._stop(running)
                await running.sink.clear()
                await running.status.remove()
            for key, config in sorted(desired.items()):
                fingerprint = self._fingerprint(config)
                current = self._running.get(key)
                if current is not None and current.fingerprint == fingerprint:
                    continue
                if current is not None:
                    log.info("registry %s changed: restarting it", key)
                    await self._stop(current)
                self._start(key, config, fingerprint)

    async def stop_all(self) -> None:
        """Stop every registry, keeping what they published."""
        async with self._lock:
            running, self._running = self._running, {}
            for key in sorted(running):
                await self._stop(running[key])

    async def clear_sources(self, sources: Iterable[str]) -> None:
        """Empty resyncs for registries that are not configured but left services in the log (removed
        while no replica was leading)."""
        async with self._lock:
            for source in sorted(set(sources)):
                if source in self._running:
                    continue
                registry_type, _, name = source.partition("/")
                log.info("registry %s is not in McpBridge but has services: removing them", source)
                status = RegistryStatus(self.bus, source)
                sink = self._sink(RegistryConfig(type=registry_type, name=name), status)
                if await self._lead_briefly(sink):
                    try:
                        await sink.clear()
                    finally:
                        await sink.release()
                    await status.remove()

    async def _lead_briefly(self, sink: EventSink) -> bool:
        """Take a source's lease to publish once; False (logged) when another replica keeps it."""
        give_up = asyncio.Event()
        timer = asyncio.get_running_loop().call_later(2 * self.lease_ttl, give_up.set)
        try:
            if await sink.lead(give_up):
                return True
        finally:
            timer.cancel()
        log.warning("registry %s: another replica holds %s; not clearing it", sink.source, sink.lease.name)
        return False

    # -- one registry ---------------------------------------------------------------------------

    def _sink(self, config: RegistryConfig, status: RegistryStatus) -> EventSink:
        return EventSink(
            self.bus, config, status, stop=self.stop, instance_id=self.instance_id, lease_ttl=self.lease_ttl
        )

    def _start(self, key: str, config: RegistryConfig, fingerprint: bytes) -> None:
        status = RegistryStatus(self.bus, config.key)
        sink = self._sink(config, status)
        task = asyncio.create_task(self._run(key, config, sink, status), name=f"registry {key}")
        self._running[key] = _Running(config, fingerprint, sink, status, task)
        log.info("registry %s started", key, extra={"domain": config.domain, "port": config.port})

    async def _run(self, key: str, config: RegistryConfig, sink: EventSink, status: RegistryStatus) -> None:
        """The registry, while its sink holds the source lease; standing by for the lease when it is lost."""
        try:
            while not self.stop.is_set():
                if not await sink.lead(self.stop):
                    return
                work = asyncio.ensure_future(self._run_registry(key, config, sink, status))
                losing = asyncio.ensure_future(sink.lease.lost.wait())
                try:
                    await asyncio.wait({work, losing}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    losing.cancel()
                    await cancel_until_done(work)
                log.warning("registry %s: lost the lease %s; standing by", key, sink.lease.name)
        finally:
            await sink.release()

    async def _run_registry(
        self, key: str, config: RegistryConfig, sink: EventSink, status: RegistryStatus
    ) -> None:
        """Run the registry client, retrying with backoff, until cancelled."""
        backoff = Backoff(base=self.retry_base, cap=self.retry_cap)
        registry: Registry | None = None
        refused_before = False
        while True:
            resyncs = sink.resyncs
            try:
                if registry is None:
                    registry = self.factory(config, self.credentials)
                await registry.run(sink)
                reason = "the registry client stopped on its own"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                reason = str(exc) or type(exc).__name__
                refused = _refused(exc)
            else:
                refused = False
            if sink.resyncs > resyncs:
                backoff.reset()  # it worked for a while: retry soon
            delay = backoff.next_delay()
            if refused:
                delay = min(delay, PROBE_CAP)
            # Logged once per run of refusals: the probes repeat every second until the server is back.
            quiet = refused and refused_before and sink.resyncs == resyncs
            refused_before = refused
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "registry %s failed (%s); keeping its last published services, retrying in %.1fs",
                key,
                reason,
                delay,
            )
            status.outage(reason)
            await asyncio.sleep(delay)

    async def _stop(self, running: _Running) -> None:
        running.task.cancel()
        done, _ = await asyncio.wait({running.task}, timeout=STOP_TIMEOUT)
        if not done:
            log.error("registry %s did not stop within %.0fs", running.sink.source, STOP_TIMEOUT)
        elif not running.task.cancelled() and running.task.exception() is not None:
            log.error(
                "registry %s ended with an error", running.sink.source, exc_info=running.task.exception()
            )
        await running.status.close()


def _refused(exc: BaseException) -> bool:
    """Whether the registry's server refused the connection (nothing listening: down or restarting),
    anywhere in the exception's cause chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ConnectionRefusedError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


async def published_sources(bus: Bus, types: Iterable[str]) -> set[str]:
    """Sources of these registry types whose RegistryService events still hold services: every source
    whose last RegistryService message is not an empty resync."""
    out: set[str] = set()
    for registry_type in sorted(set(types)):
        pattern = f"{EVENTS_SUBJECT_PREFIX}.{subject_token(registry_type)}.*.{REGISTRY_SERVICE_KIND}"
        info = await bus.js.stream_info(EVENTS_STREAM, subjects_filter=pattern)
        for subject in sorted(info.state.subjects or {}):
            try:
                last = await bus.js.get_last_msg(EVENTS_STREAM, subject)
                event = decode(last.data or b"")
            except (NotFoundError, MalformedEvent):
                continue
            if event.op is Op.SYNC_END:
                try:
                    end = msgspec.convert(event.body, SyncEnd)
                except msgspec.ValidationError:
                    end = None
                if end is not None and end.parts == 1 and not end.keys:
                    continue  # already cleared
            out.add(event.source)
    return out
