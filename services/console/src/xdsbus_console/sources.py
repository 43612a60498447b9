"""The sources view: who holds each lease of KV xdsbus_leases (a watcher's source, a registry watcher's
replica group, a builder's scope; docs/design.md §4) and each registry's own status entry (kind
`Registry` in KV xdsbus_status, xdsbus.registry.status)."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from nats.js.errors import KeyNotFoundError

from xdsbus import status_store
from xdsbus.bus import LEASES_BUCKET, Bus
from xdsbus.registry.status import STATUS_KIND as REGISTRY_KIND

_SUBJECT_PREFIX = f"$KV.{LEASES_BUCKET}."


class LeaseRow(msgspec.Struct, frozen=True, kw_only=True):
    """One lease: its holder, and the KV revision of its last write (acquisition or renewal)."""

    name: str
    holder: str
    revision: int
    # When the holder last wrote it, and seconds since (a lease not renewed within its TTL expires).
    renewed: str
    age_seconds: float


async def leases(bus: Bus, now: datetime.datetime | None = None) -> list[LeaseRow]:
    """Every lease held right now, sorted by name."""
    info = await bus.js.stream_info(f"KV_{LEASES_BUCKET}", subjects_filter=f"{_SUBJECT_PREFIX}>")
    names = sorted(s.removeprefix(_SUBJECT_PREFIX) for s in info.state.subjects or {})
    now = now or datetime.datetime.now(tz=datetime.UTC)
    rows = []
    for name in names:
        try:
            entry = await bus.leases.get(name)
        except KeyNotFoundError:  # released, or expired since the listing
            continue
        if not entry.value:
            continue
        created = entry.created
        rows.append(
            LeaseRow(
                name=name,
                holder=entry.value.decode(errors="replace"),
                revision=entry.revision or 0,
                renewed=created.isoformat(timespec="milliseconds") if created else "",
                age_seconds=round((now - created).total_seconds(), 3) if created else 0.0,
            )
        )
    return rows


async def registries(bus: Bus) -> list[dict[str, Any]]:
    """The status entry of every registry (accepted with warnings, or rejected while unreachable)."""
    return [msgspec.to_builtins(s) for s in await status_store.read_all(bus) if s.kind == REGISTRY_KIND]
