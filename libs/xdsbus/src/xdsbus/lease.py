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
import time

from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError

from xdsbus.bus import Bus
from xdsbus.events import subject_token
from xdsbus.transient import describe, is_transient

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
            except Exception as exc:
                # A standby keeps waiting through NATS faults; it is still able to take over.
                if not is_transient(exc):
                    raise
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
        """Renew every `interval` until refused. A transient fault (timeout, no responders, a leader
        change) is retried after a short pause, until the TTL since the last renewal has passed: then the
        entry may have expired and a standby taken over, so the lease counts as lost."""
        renewed = time.monotonic()
        faulted = False
        await asyncio.sleep(interval)
        while True:
            try:
                # Bounded by the interval: a request held while the client reconnects must not outlast
                # the TTL it is meant to extend.
                self._revision = await asyncio.wait_for(
                    self.bus.leases.update(self.name, self.holder.encode(), last=self._revision), interval
                )
            except Exception as exc:
                if faulted and isinstance(exc, KeyWrongLastSequenceError) and await self._renewed_late():
                    faulted = False
                    renewed = time.monotonic()
                    await asyncio.sleep(interval)
                    continue
                if not is_transient(exc):
                    log.error("lease %s lost by %s: %s", self.name, self.holder, describe(exc))
                    self.lost.set()
                    return
                faulted = True
                # The renewal interval is a third of the TTL that expires the entry (`_renew_interval`).
                left = interval * 3 - (time.monotonic() - renewed)
                if left <= 0:
                    log.error(
                        "lease %s lost by %s: not renewed for its TTL (%s)",
                        self.name,
                        self.holder,
                        describe(exc),
                    )
                    self.lost.set()
                    return
                log.warning("lease %s: renewing: %s; retrying", self.name, describe(exc))
                await asyncio.sleep(min(interval / 3, left))
                continue
            faulted = False
            renewed = time.monotonic()
            await asyncio.sleep(interval)

    async def _renewed_late(self) -> bool:
        """After a renewal timed out, whether it was applied after all (the entry still names this
        holder, at a newer revision): then that revision is adopted."""
        try:
            entry = await self.bus.leases.get(self.name)
        except Exception:
            return False
        if entry.value is None or entry.value.decode(errors="replace") != self.holder or not entry.revision:
            return False
        if entry.revision <= self._revision:
            return False
        self._revision = entry.revision
        return True

    async def release(self) -> None:
        """Give the lease up so a standby takes over at once instead of after the TTL."""
        if self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None
        if self.lost.is_set():
            return
        try:
            await self.bus.leases.delete(self.name, last=self._revision)
        except NatsError as exc:
            # Releasing is a courtesy (the TTL frees the lease anyway): a NATS fault here, say an election
            # in a cluster, must not end the service that steps down.
            log.info("lease %s not released by %s (%s); it expires by its TTL", self.name, self.holder, exc)
