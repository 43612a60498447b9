"""The sources view: who holds each lease of KV xdsbus_leases (a watcher's source, a registry watcher's
replica group, a builder's scope; docs/design.md §4) and each registry's own status entry (kind
`Registry` in KV xdsbus_status, xdsbus.registry.status)."""

from __future__ import annotations

import datetime
from typing import Any

import msgspec
from nats.js.errors import NotFoundError

from xdsbus import status_store
from xdsbus.bus import LEASES_BUCKET, Bus
from xdsbus.registry.status import STATUS_KIND as REGISTRY_KIND

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
