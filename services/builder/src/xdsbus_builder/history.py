"""The leader's history duties (docs/design.md §5): ledger bases, the history window and the body sweep.

- A base (`ledger/bases.py`) after every `base_every` versions, and after the first version of a day
  (at least daily), and after the first version of a term when the scope has none yet. The manifest is
  copied when the version is published and encoded and stored in the background.
- Every `interval` seconds a collection in the background: purge what of this scope's ledger is older
  than the window (`ledger/window.py`), then sweep the bodies no kept version of any scope references
  (`ledger/sweep.py`). Never on every version: a sweep lists every body. Only bodies written before the
  previous collection began are swept, a whole interval of grace for a publisher between storing bodies
  and publishing the record naming them; the first collection of a term only sets that fence.
A failure only costs a later retry: it is logged and the fold goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.ledger import bases, sweep, window
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus_builder.teardown import settle

log = logging.getLogger(__name__)

DAY_NS = 24 * 3600 * 10**9
# Longest wait between collections, whatever the window.
MAX_INTERVAL = 3600.0


def collect_interval(window_seconds: float) -> float:
    """Seconds between collections: a tenth of the window, at most an hour, at least a second."""
    return max(1.0, min(MAX_INTERVAL, window_seconds / 10))


class History:
    """Bases, purges and sweeps for one scope during one term of leadership."""

    def __init__(
        self,
        bus: Bus,
        scope: str,
        *,
        base_every: int,
        window: float,
        interval: float | None = None,
    ) -> None:
        self.bus = bus
        self.scope = scope
        self.base_every = max(1, base_every)
        self.window = window
        self.interval = collect_interval(window) if interval is None else interval
        self.versions_since_base = 0
        # When the newest base was written (unix ns; 0: none, or not looked up yet).
        self.last_base_ns = 0
        self._looked_up = False
        self._next_collect = time.monotonic() + self.interval
        self._base_task: asyncio.Task[None] | None = None
        self._collect_task: asyncio.Task[None] | None = None
        # The body stores' fence taken when the previous collection began (None: none yet this term).
        self._fence: sweep.Fence | None = None

    def published(
        self, record: ledger_pb2.Version, stream_seq: int, manifest: Callable[[], dict[ResourceKey, str]]
    ) -> None:
        """A version was published (its record at `stream_seq`): write a base of it when one is due.
        `manifest` returns a copy of the version's resources; it is called only then, right away."""
        self.versions_since_base += 1
        if self._base_task is not None and not self._base_task.done():
            return
        due = (
            not self._looked_up
            or self.versions_since_base >= self.base_every
            or time.time_ns() - self.last_base_ns >= DAY_NS
        )
        if due:
            self._base_task = asyncio.create_task(self._write_base(record, stream_seq, manifest()))

    def tick(self) -> None:
        """Start a collection (window purge, then sweep) when its time has come and none is running."""
        if time.monotonic() < self._next_collect:
            return
        if self._collect_task is not None and not self._collect_task.done():
            return
        self._next_collect = time.monotonic() + self.interval
        self._collect_task = asyncio.create_task(self.collect())

    async def close(self) -> None:
        """Let a running base or collection finish (the term ends), each for a bounded time."""
        for task, what in ((self._base_task, "ledger base"), (self._collect_task, "history collection")):
            if task is not None:
                await settle(task, f"{what} of scope {self.scope}")

    async def _write_base(
        self, record: ledger_pb2.Version, stream_seq: int, committed: dict[ResourceKey, str]
    ) -> None:
        try:
            if not self._looked_up:
                await self._look_up()
                if self.last_base_ns and time.time_ns() - self.last_base_ns < DAY_NS:
                    # A base exists from an earlier term; count from this term's first version.
                    return
            name = await bases.save(
                self.bus,
                scope=self.scope,
                version=record.version,
                stream_seq=stream_seq,
                digest=record.digest,
                digest_algorithm=record.digest_algorithm,
                resources=committed,
            )
            self.versions_since_base = 0
            self.last_base_ns = time.time_ns()
            log.info("ledger base %s saved (%d resources)", name, len(committed))
        except Exception as exc:  # a missing base only costs readers a longer start
            log.warning("ledger base of version %d failed: %s", record.version, exc)

    async def _look_up(self) -> None:
        """When the scope's newest base was written, from the store."""
        stored = await bases.stored(self.bus, self.scope)
        if stored:
            self.last_base_ns = window.mtime_ns(stored[-1].mtime) or 0
        self._looked_up = True

    async def collect(self) -> None:
        """Purge this scope's ledger outside the window, then sweep unreferenced bodies."""
        try:
            purged = await window.purge_outside(self.bus, self.scope, self.window)
            if purged is not None:
                log.info(
                    "scope %s: history before version %d purged (%d bases, %d change lists)",
                    self.scope,
                    purged.kept_base,
                    purged.bases,
                    purged.change_lists,
                )
            fence, self._fence = self._fence, await sweep.read_fence(self.bus)
            if fence is None:
                return
            swept = await sweep.sweep(self.bus, fence)
            log.info(
                "body sweep: %d referenced, %d removed (%d large), %d newer than the sweep kept",
                swept.marked,
                swept.kv_removed + swept.large_removed,
                swept.large_removed,
                swept.kept_recent,
            )
        except sweep.Unmarkable as exc:
            log.warning("body sweep skipped: %s", exc)
        except Exception as exc:  # retried at the next collection
            log.warning("history collection of scope %s failed: %s", self.scope, exc)
