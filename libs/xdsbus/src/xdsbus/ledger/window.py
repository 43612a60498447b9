"""The history window (docs/design.md §5): what of a scope's ledger is older than the window goes.

The cut is the newest usable base written at or before the window's start. That base, its record and
everything after stay, so every version in the window (and the one in force when it began) can still
be read and served: a reader starts from that base or a newer one. Before it go the ledger records
(JetStream purge of the scope's subject below the base's stream sequence), the older bases and the
change-list objects of the purged versions. Bodies are swept apart (`sweep.py`), across scopes.
"""

from __future__ import annotations

import datetime
import logging
import re
import time

import msgspec
from nats.js.errors import NotFoundError

from xdsbus.bus import LEDGER_BASES_STORE, LEDGER_CHANGES_STORE, LEDGER_STREAM, Bus, ledger_subject
from xdsbus.ledger import bases
from xdsbus.ledger.removal import drop_object, object_meta_seq
from xdsbus.objects import list_objects

log = logging.getLogger(__name__)

_FRACTION = re.compile(r"\.(\d{6})\d*")


class Purged(msgspec.Struct, frozen=True):
    """What one pass removed: the base kept as the window's first, and what went before it."""

    kept_base: int
    kept_stream_seq: int
    bases: int
    change_lists: int


def mtime_ns(mtime: str) -> int | None:
    """An Object Store mtime (RFC 3339, as nats-py or Go clients write it) in unix ns, or None."""
    if not mtime:
        return None
    text = _FRACTION.sub(r".\1", mtime.replace("Z", "+00:00"))
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return int(when.timestamp() * 1_000_000) * 1000


async def window_base(bus: Bus, scope: str, start_ns: int) -> bases.Base | None:
    """The newest base written at or before `start_ns` that reads and verifies, or None."""
    for candidate in reversed(await bases.stored(bus, scope)):
        written = mtime_ns(candidate.mtime)
        if written is None or written > start_ns:
            continue
        try:
            return await bases.load(bus, scope, candidate.version)
        except bases.UNUSABLE as exc:
            log.warning(
                "ledger base %s unusable (%s); the window starts at an older one", candidate.name, exc
            )
    return None


async def purge_outside(bus: Bus, scope: str, window: float, *, now_ns: int | None = None) -> Purged | None:
    """Purge what of `scope`'s ledger is older than `window` seconds; None when no base is old enough
    (nothing can go yet)."""
    start_ns = (time.time_ns() if now_ns is None else now_ns) - int(window * 1e9)
    keep = await window_base(bus, scope, start_ns)
    if keep is None:
        return None
    await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject(scope), seq=keep.stream_seq)
    dropped_bases = 0
    for older in await bases.stored(bus, scope):
        if older.version < keep.version and await _drop(bus, LEDGER_BASES_STORE, older.name):
            dropped_bases += 1
    dropped_changes = 0
    for name in await _change_lists_before(bus, scope, keep.version):
        if await _drop(bus, LEDGER_CHANGES_STORE, name):
            dropped_changes += 1
    return Purged(
        kept_base=keep.version,
        kept_stream_seq=keep.stream_seq,
        bases=dropped_bases,
        change_lists=dropped_changes,
    )


async def _change_lists_before(bus: Bus, scope: str, version: int) -> list[str]:
    """Names of the scope's change-list objects of versions before `version` (same naming as bases:
    `<scope>.<version, 20 digits>`)."""
    infos = await list_objects(bus.ledger_changes, what="the ledger change lists")
    names = []
    for info in infos:
        of = bases.version_of(scope, info.name)
        if of is not None and of < version and not info.deleted:
            names.append(info.name)
    return names


async def _drop(bus: Bus, bucket: str, name: str) -> bool:
    """Remove an object of one of the ledger's stores, marker included; False when already gone."""
    store = bus.ledger_bases if bucket == LEDGER_BASES_STORE else bus.ledger_changes
    meta_seq = await object_meta_seq(bus.js, bucket, name)
    if meta_seq is None:
        return False
    try:
        info = await store.get_info(name, show_deleted=True)
    except NotFoundError:
        return False
    await drop_object(bus.js, bucket, name, info.nuid or "", meta_seq)
    return True
