"""A watcher's report on itself in KV xdsbus_status (kind `Watcher`, key `state`): who publishes the
source, since when, when it last resynced, how fresh its view of the source is (the source's last
answer) and its last error. The console's sources view and `xdsbus status Watcher` read it
(docs/console.md): /metrics says the same per process, this says it for every source in one place.

The lease holder rewrites it every `every` seconds while it publishes, and at once after a resync or a
failure of its source. A watcher that stops says so in a last report; one that loses its lease writes
nothing more (the new holder's reports replace its own)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus, Verdict, WatcherState

log = logging.getLogger(__name__)

WATCHER_KIND = "Watcher"
STATE_KEY = "state"


class Reporting(Protocol):
    """What a report is made of (xdsbus.watcher.Watcher)."""

    bus: Bus
    source: str
    instance_id: str
    term: int
    source_seen_at: float  # monotonic
    resynced_at: float | None  # monotonic
    leading_since: float  # wall
    resyncs: int
    events_published: int
    last_error: str
    last_error_at: float  # wall
    failing: bool  # the source failed and has not answered since


def _wall(monotonic_at: float | None) -> float:
    if monotonic_at is None:
        return 0.0
    return round(time.time() - (time.monotonic() - monotonic_at), 3)


def state_of(watcher: Reporting, every: float, *, leading: bool = True) -> ObjectStatus:
    """The watcher's status entry now. Rejected, with the error, while its source fails (it failed and
    has not answered since): what it publishes is its last known state."""
    failing = watcher.failing
    return ObjectStatus(
        kind=WATCHER_KIND,
        source=watcher.source,
        key=STATE_KEY,
        state=Verdict.REJECTED if failing else Verdict.ACCEPTED,
        reason=f"source failing: {watcher.last_error}; its last known state stays" if failing else "",
        watcher=WatcherState(
            holder=watcher.instance_id,
            term=watcher.term,
            leading=leading,
            leading_since=watcher.leading_since,
            last_answer=_wall(watcher.source_seen_at),
            last_resync=_wall(watcher.resynced_at),
            resyncs=watcher.resyncs,
            events_published=watcher.events_published,
            last_error=watcher.last_error,
            last_error_at=watcher.last_error_at,
            reported=round(time.time(), 3),
            report_every=every,
        ),
    )


async def write(watcher: Reporting, every: float, *, leading: bool = True) -> None:
    """Write the report once; a bus that cannot take it now is not the watcher's failure."""
    try:
        await status_store.put(watcher.bus, state_of(watcher, every, leading=leading))
    except Exception as exc:
        log.debug("%s: report not written (%s)", watcher.source, exc)


async def keep_reporting(watcher: Reporting, every: float, wake: asyncio.Event) -> None:
    """Report every `every` seconds, or sooner when `wake` is set; until cancelled."""
    while True:
        wake.clear()
        await write(watcher, every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), timeout=every)
