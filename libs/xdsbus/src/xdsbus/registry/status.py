"""The status of a running registry in KV `xdsbus_status`, so `xdsbus status Registry/<type>/<name>` shows
it: accepted with the garbage its client reported as warnings, or rejected while the registry is
unreachable (its last published services are kept meanwhile).

One entry per registry (kind `Registry`, source and key `<type>/<name>`), in the format of the builder's
per-object statuses (xdsbus.contract.status.ObjectStatus), written through xdsbus.status_store. Writes
are coalesced and skipped when nothing changed, so a registry reporting the same bad instance at every
relist costs no KV traffic.
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import Error as NatsError

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus, Verdict

log = logging.getLogger(__name__)

STATUS_KIND = "Registry"
# Warnings kept per registry: enough to diagnose, bounded against a registry full of garbage.
MAX_PROBLEMS = 50
# Problems reported in a burst (a relist finding many bad instances) go out in one write.
FLUSH_DELAY = 0.2


class RegistryStatus:
    """The status entry of one registry, `source` = `key` = `<type>/<name>`."""

    def __init__(self, bus: Bus, source: str) -> None:
        self.bus = bus
        self.source = source
        # what -> (reason, the resync generation it was reported in)
        self._problems: dict[str, tuple[str, int]] = {}
        self._generation = 0
        self._outage = ""
        self._started = False
        self._written: ObjectStatus | None = None
        self._flusher: asyncio.Task[None] | None = None

    def problem(self, what: str, reason: str) -> None:
        """Record garbage from the registry; kept until a later resync no longer reports it."""
        log.warning("%s: %s: %s", self.source, what, reason)
        self._problems[what] = (reason, self._generation)
        self._schedule()

    def resynced(self) -> None:
        """A resync completed: the registry is reachable, and problems reported before the previous
        resync completed (not seen again while listing for this one) are gone."""
        self._problems = {w: (r, g) for w, (r, g) in self._problems.items() if g >= self._generation}
        self._generation += 1
        self._outage = ""
        self._started = True
        self._schedule()

    def outage(self, reason: str) -> None:
        """The registry failed; shown as rejected until its next completed resync."""
        self._outage = reason
        self._started = True
        self._schedule()

    def current(self) -> ObjectStatus:
        """The status as it stands."""
        warnings = [f"{what}: {reason}" for what, (reason, _) in sorted(self._problems.items())]
        if len(warnings) > MAX_PROBLEMS:
            warnings = [*warnings[:MAX_PROBLEMS], f"... and {len(warnings) - MAX_PROBLEMS} more"]
        state = Verdict.REJECTED if self._outage else Verdict.ACCEPTED
        return ObjectStatus(
            kind=STATUS_KIND,
            source=self.source,
            key=self.source,
            state=state,
            reason=f"registry unreachable: {self._outage}" if self._outage else "",
            warnings=warnings,
        )

    def _schedule(self) -> None:
        if self._flusher is not None and not self._flusher.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the event loop: the next call from inside it writes
        self._flusher = loop.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(FLUSH_DELAY)
        await self.flush()

    async def flush(self) -> None:
        """Write the status when it changed; a NATS failure is logged and retried at the next change."""
        if not self._started:
            return
        status = self.current()
        if status == self._written:
            return
        try:
            await status_store.put(self.bus, status)
            self._written = status
        except (TimeoutError, NatsError) as exc:
            log.warning("%s: cannot write the registry status (%s)", self.source, exc)

    async def close(self) -> None:
        """Stop the pending write, if any (the registry is stopping; a successor owns the entry)."""
        if self._flusher is not None:
            self._flusher.cancel()
            try:
                await self._flusher
            except asyncio.CancelledError:
                pass
            self._flusher = None

    async def remove(self) -> None:
        """The registry is gone from McpBridge: so is its status."""
        await self.close()
        try:
            await status_store.delete(self.bus, STATUS_KIND, self.source, self.source)
        except (TimeoutError, NatsError) as exc:
            log.warning("%s: cannot delete the registry status (%s)", self.source, exc)
        self._written = None
