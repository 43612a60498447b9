"""Leadership through a lease in NATS KV: one active instance per job, standbys wait to take over.

The lease key lives in a bucket whose entries expire after the lease TTL; the holder renews it with a
compare-and-set on the revision it last wrote. Used by the builder (`builder.<scope>`, backed up by the
ledger publisher's sequence fence: even a holder that has not yet noticed it lost the lease cannot
publish), by every watcher for its source (`watch.<source_type>.<source_name>`, docs/design.md §4: the
revision at acquisition is the watcher's term, which the fold uses as the fence), by the registry
watchers' replica groups and by the Kubernetes watcher's status writer (`watch-k8s.<cluster>.status`).

A lease created with `reclaim=True` is taken back at once by a holder of the same identity (a restarted
process of the same pod) with a compare-and-set on the entry's revision, instead of waiting out the
TTL. Only the first acquisition of a `Lease` does that: a holder that lost its lease waits like any
standby, so two processes that share an identity by mistake cannot take it from each other forever.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError

from xdsbus.bus import Bus
from xdsbus.events import subject_token

log = logging.getLogger(__name__)


def pod_identity() -> str:
    """A holder identity that a restarted process of the same pod shares: `POD_NAME` (set from the
    Downward API in deploy/), else the host name (a container's is its pod's name)."""
    return os.environ.get("POD_NAME") or socket.gethostname()


def source_lease_name(source: str) -> str:
    """The lease of a source `<type>/<name>`: `watch.<type>.<name>`, each part a valid KV key token."""
    source_type, _, name = source.partition("/")
    return f"watch.{subject_token(source_type)}.{subject_token(name)}"


class Lease:
    """A named lease held by `holder`; `term` is its revision when it was acquired."""

    def __init__(
        self,
        bus: Bus,
        name: str,
        holder: str,
        ttl: float,
        *,
        reclaim: bool = False,
        bucket_pace: bool = False,
    ) -> None:
        self.bus = bus
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.lost = asyncio.Event()
        # The KV revision of the acquisition: it only grows, across holders and restarts.
        self.term = 0
        self._reclaim = reclaim
        # Renew by the bucket's TTL when it is shorter than `ttl` (the builder keeps its own pace: its
        # fencing tests pause a holder that renews slower than the bucket expires).
        self._bucket_pace = bucket_pace
        self._revision = 0
        self._renewer: asyncio.Task[None] | None = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until the lease is ours (True) or `stop` is set (False)."""
        while not stop.is_set():
            try:
                revision = await self._take_back() if self._reclaim else None
                self._reclaim = False
                if revision is None:
                    revision = await self.bus.leases.create(self.name, self.holder.encode())
                self._revision = self.term = revision
                self.lost.clear()
                self._renewer = asyncio.create_task(self._renew(await self._renew_interval()))
                log.info("lease %s acquired by %s (term %d)", self.name, self.holder, self.term)
                return True
            except (KeyWrongLastSequenceError, APIError, NatsTimeoutError):
                pass
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.ttl / 4)
            except TimeoutError:
                pass
        return False

    async def _take_back(self) -> int | None:
        """The new revision when the entry names this holder (a previous process of the same identity
        held it), None when it names nobody or someone else. The compare-and-set on the entry's revision
        fails if anyone wrote the entry in between."""
        try:
            entry = await self.bus.leases.get(self.name)
        except KeyNotFoundError:
            return None
        if entry.value is None or entry.value.decode(errors="replace") != self.holder or not entry.revision:
            return None
        revision = await self.bus.leases.update(self.name, self.holder.encode(), last=entry.revision)
        log.info("lease %s taken back by %s without waiting for its TTL", self.name, self.holder)
        return revision

    async def _renew_interval(self) -> float:
        """A third of the lease's TTL: `ttl`, or with `bucket_pace` the bucket's when that is shorter (the
        bucket expires the entry, whatever this holder was told)."""
        ttl = self.ttl
        if not self._bucket_pace:
            return ttl / 3
        try:
            bucket = (await self.bus.leases.status()).ttl
        except (APIError, NatsTimeoutError):
            bucket = None
        if bucket:
            ttl = min(ttl, bucket)
        return ttl / 3

    async def _renew(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
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
