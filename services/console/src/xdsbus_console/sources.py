"""The sources view: who holds each lease of KV xdsbus_leases (a watcher's source, a registry watcher's
replica group, a builder's scope; docs/design.md §4), what each watcher reports on itself (kind `Watcher`
in KV xdsbus_status, xdsbus.watcher_report) and each registry's own status entry (kind `Registry`,
xdsbus.registry.status)."""

from __future__ import annotations

import datetime
import time
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from xdsbus import status_store
from xdsbus.bus import LEASES_BUCKET, Bus
from xdsbus.registry.status import STATUS_KIND as REGISTRY_KIND
from xdsbus.watcher_report import WATCHER_KIND

# Reports missed before a watcher's row says it is gone (a crashed process writes no last report).
_MISSED_REPORTS = 3

_SUBJECT_PREFIX = f"$KV.{LEASES_BUCKET}."
# A released lease is a delete marker in the bucket's stream.
_GONE = ("DEL", "PURGE")


class LeaseRow(msgspec.Struct, frozen=True, kw_only=True):
    """One lease: its holder, and the KV revision of its last write (acquisition or renewal)."""

    name: str
    holder: str
    revision: int
    # When the holder last wrote it, and seconds since (a lease not renewed within its TTL expires).
    renewed: str
    age_seconds: float


async def leases(bus: Bus, now: datetime.datetime | None = None) -> list[LeaseRow]:
    """Every lease held right now, sorted by name. Read as the bucket stream's last message per key,
    which carries when it was written (a KV get does not)."""
    info = await bus.js.stream_info(f"KV_{LEASES_BUCKET}", subjects_filter=f"{_SUBJECT_PREFIX}>")
    subjects = sorted(info.state.subjects or {})
    now = now or datetime.datetime.now(tz=datetime.UTC)
    rows = []
    for subject in subjects:
        try:
            msg = await bus.js.get_last_msg(f"KV_{LEASES_BUCKET}", subject)
        except NotFoundError:  # expired since the listing
            continue
        if not msg.data or (msg.headers or {}).get("KV-Operation") in _GONE:
            continue  # released
        written = msg.time
        rows.append(
            LeaseRow(
                name=subject.removeprefix(_SUBJECT_PREFIX),
                holder=msg.data.decode(errors="replace"),
                revision=msg.seq or 0,
                renewed=written.isoformat(timespec="milliseconds") if written else "",
                age_seconds=round((now - written).total_seconds(), 3) if written else 0.0,
            )
        )
    return rows


async def registries(bus: Bus) -> list[dict[str, Any]]:
    """The status entry of every registry (accepted with warnings, or rejected while unreachable)."""
    return [msgspec.to_builtins(s) for s in await status_store.read_all(bus) if s.kind == REGISTRY_KIND]


class WatcherRow(msgspec.Struct, frozen=True, kw_only=True):
    """One source's watcher as it last reported, with ages computed now."""

    source: str
    holder: str
    term: int
    # publishing, stopped (it said so), silent (no report for a few of its intervals), failing
    state: str
    reason: str
    leading_since: float
    last_resync: float
    resyncs: int
    events_published: int
    # Seconds since the source last answered: what the view of the source may lag behind it.
    lag_seconds: float | None
    last_error: str
    last_error_at: float
    reported_seconds_ago: float


async def watchers(bus: Bus, now: float | None = None) -> list[WatcherRow]:
    """Every watcher's last report, by source."""
    now = time.time() if now is None else now
    rows = []
    for status in await status_store.read_all(bus):
        report = status.watcher
        if status.kind != WATCHER_KIND or report is None:
            continue
        ago = max(0.0, now - report.reported)
        if not report.leading:
            state = "stopped"
        elif ago > _MISSED_REPORTS * max(report.report_every, 1.0):
            state = "silent"
        else:
            state = "failing" if status.state == "rejected" else "publishing"
        rows.append(
            WatcherRow(
                source=status.source,
                holder=report.holder,
                term=report.term,
                state=state,
                reason=status.reason,
                leading_since=report.leading_since,
                last_resync=report.last_resync,
                resyncs=report.resyncs,
                events_published=report.events_published,
                lag_seconds=round(max(0.0, now - report.last_answer), 3) if state == "publishing" else None,
                last_error=report.last_error,
                last_error_at=report.last_error_at,
                reported_seconds_ago=round(ago, 3),
            )
        )
    return sorted(rows, key=lambda row: row.source)
