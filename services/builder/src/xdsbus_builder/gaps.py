"""Reporting a gap in the event log (docs/design.md §4): the builder publishes nothing while the events
after its checkpoint are not all there, and says so in KV xdsbus_status and its log."""

from __future__ import annotations

import logging

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.fold.reading import EventGap

log = logging.getLogger(__name__)

KIND = "Builder"
KEY = "gap"


def source(scope: str) -> str:
    """The status source of a scope's builder."""
    return f"builder/{scope}"


def describe(gap: EventGap) -> str:
    """What is missing and what resolves it, for the log and `xdsbus status`."""
    return f"{gap}: publishing stopped; restore a checkpoint at or after {gap.last}"


async def report(bus: Bus, scope: str, gap: EventGap) -> None:
    """Log the gap and record it as the builder's status entry."""
    reason = describe(gap)
    log.error("scope %s: %s", scope, reason)
    await status_store.put(
        bus, ObjectStatus(kind=KIND, source=source(scope), key=KEY, state=Verdict.REJECTED, reason=reason)
    )


async def clear(bus: Bus, scope: str) -> None:
    """Remove a gap reported before (by this builder or an earlier one): the fold is whole again."""
    # Read first: a delete writes a marker into the bucket even when there is no entry, at every restore.
    if await status_store.read(bus, KIND, source(scope), KEY) is not None:
        await status_store.delete(bus, KIND, source(scope), KEY)
