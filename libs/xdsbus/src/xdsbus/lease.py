"""Leadership through a lease in NATS KV: one active instance per job, standbys wait to take over.

The lease key lives in a bucket whose entries expire after the lease TTL; the holder renews it with a
compare-and-set on the revision it last wrote. Used by the builder (`builder.<scope>`, backed up by the
ledger publisher's sequence fence: even a holder that has not yet noticed it lost the lease cannot
publish) and by the Kubernetes watcher's status writer (`watch-k8s.<cluster>.status`).
"""

from __future__ import annotations

import asyncio
import logging

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, KeyWrongLastSequenceError

from xdsbus.bus import Bus

log = logging.getLogger(__name__)


class Lease:
    """A named lease held by `holder`."""

    def __init__(self, bus: Bus, name: str, holder: str, ttl: float) -> None:
        self.bus = bus
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.lost = asyncio.Event()
        self._revision = 0
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is ours (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                self._revision = await self.bus.leases.create(self.name, self.holder.encode())
                self.lost.clear()
                self._renewer = asyncio.create_task(self._renew())
                log.info("lease %s acquired by %s", self.name, self.holder)
                return True
            except (KeyWrongLastSequenceError, APIError, NatsTimeoutError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.ttl / 4)
            except TimeoutError:
                pass
        return False

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                self._revision = await self.bus.leases.update(
                    self.name, self.holder.encode(), last=self._revision
                )
            except (KeyWrongLastSequenceError, APIError) as exc:
                log.error("lease %s lost by %s: %s", self.name, self.holder, exc)
                self.lost.set()
                return
            except NatsTimeoutError:
                # NATS is slow or away: the lease may expire meanwhile; the next renewal tells.
                continue

    async def release(self) -> None:
        """Give the lease up so a standby takes over at once instead of after the TTL."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if self.lost.is_set():
            return
        try:
            await self.bus.leases.delete(self.name, last=self._revision)
        except (KeyWrongLastSequenceError, APIError, NatsTimeoutError):
            pass
