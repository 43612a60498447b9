"""The history window and the body sweep (docs/design.md §5), with a real nats-server: what is older than
the window goes, every version in the window stays readable, and the sweep removes only bodies no kept
version names, never one written while it runs."""

from __future__ import annotations

import hashlib
import time

import pytest
from nats.js.errors import KeyNotFoundError

from tests.ledger.test_bases import Ledger
from xdsbus.bus import LEDGER_STREAM, Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.ledger import bases, reader, sweep, window
from xdsbus.ledger.store import fetch_body

FAR_FUTURE = time.time_ns() + 10**15


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def _stored(bus: Bus, text: str) -> bool:
    try:
        await bus.resources.get(_sha(text))
        return True
    except KeyNotFoundError:
        return False


async def test_nothing_is_purged_before_a_base_is_old_enough(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    await ledger.base(2, dict(ledger.resources))
    assert await window.purge_outside(bus, ledger.scope, 3600.0) is None
    assert (await bus.js.stream_info(LEDGER_STREAM)).state.messages == 1


async def test_the_purge_keeps_every_version_from_the_window_base_on(bus: Bus) -> None:
    ledger = Ledger(bus)
    sets: dict[int, dict[ResourceKey, str]] = {}
    for version in range(2, 12, 2):
        await ledger.publish(version, {"a": f"a{version}", f"r{version}": "x"})
        sets[version] = dict(ledger.resources)
        if version in (4, 8):
            await ledger.base(version, sets[version])
    # Both bases are older than a window that starts in the far future: the newest (8) is the cut.
    purged = await window.purge_outside(bus, ledger.scope, 1.0, now_ns=FAR_FUTURE)
    assert purged is not None and purged.kept_base == 8 and purged.bases == 1
    assert [s.version for s in await bases.stored(bus, ledger.scope)] == [8]
    for version in (8, 10):
        assert await reader.resource_set(bus, ledger.scope, version) == sets[version]
    assert [e.record.version async for e in reader.entries(bus, ledger.scope)] == [8, 10]
    with pytest.raises(reader.VersionNotFound):
        await reader.resource_set(bus, ledger.scope, 6)


async def test_a_window_base_that_does_not_verify_is_not_the_cut(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    await ledger.base(2, dict(ledger.resources))
    await ledger.publish(4, {"a": "a2"})
    await bus.ledger_bases.put(bases.name_of(ledger.scope, 4), b"damaged")
    purged = await window.purge_outside(bus, ledger.scope, 1.0, now_ns=FAR_FUTURE)
    assert purged is not None and purged.kept_base == 2
    assert await reader.resource_set(bus, ledger.scope, 4) == ledger.resources


async def test_the_sweep_removes_only_bodies_no_kept_version_names(bus: Bus) -> None:
    ledger = Ledger(bus)
    other = Ledger(bus, "default")
    await ledger.publish(2, {"a": "old-a", "b": "kept-b"})
    await ledger.publish(4, {"a": "new-a"})
    await ledger.base(4, dict(ledger.resources))
    await ledger.publish(6, {"c": "c-after-base"}, removed=("b",))
    # Another scope still names old-a: bodies are shared between scopes.
    await other.publish(3, {"shared": "old-a"})
    await window.purge_outside(bus, ledger.scope, 1.0, now_ns=FAR_FUTURE)
    # A body only version 2 of `default` named: gone once `default` is purged too.
    await other.publish(5, {"shared": "default-new"})
    await other.base(5, dict(other.resources))
    await window.purge_outside(bus, other.scope, 1.0, now_ns=FAR_FUTURE)

    swept = await sweep.sweep(bus)
    assert swept.kv_removed == 1
    # kept-b is in base 4 (removed only at 6); new-a at 4; c at 6; default-new in default's base.
    for text in ("kept-b", "new-a", "c-after-base", "default-new"):
        assert await _stored(bus, text), text
    assert not await _stored(bus, "old-a")
    for version in (4, 6):
        for key, sha in (await reader.resource_set(bus, ledger.scope, version)).items():
            assert await fetch_body(bus, sha), key


async def test_the_sweep_never_removes_a_body_written_while_it_runs(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    # Unreferenced bodies stored before the sweep: one stays unreferenced, one is stored again (same
    # content, same name) while the sweep lists, as a concurrent publish would.
    for text in ("orphan", "republished"):
        await bus.resources.put(_sha(text), text.encode())
    listing = sweep._kv_revisions

    async def concurrent_publish(b: Bus) -> list[tuple[str, int]]:
        listed = await listing(b)
        # After the fence: a new body no record names yet, and a re-store of a candidate.
        await bus.resources.put(_sha("in-flight"), b"in-flight")
        await bus.resources.put(_sha("republished"), b"republished")
        return listed

    monkeypatch.setattr(sweep, "_kv_revisions", concurrent_publish)
    swept = await sweep.sweep(bus)
    assert not await _stored(bus, "orphan")
    assert await _stored(bus, "in-flight")
    assert await _stored(bus, "republished")
    assert await _stored(bus, "a1")
    assert swept.kv_removed == 2  # orphan, and the revision of republished that was looked at


async def test_the_sweep_marks_records_published_while_it_lists(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    # Stored before the sweep begins, named by a record only published while it lists.
    await bus.resources.put(_sha("late"), b"late")
    listing = sweep._kv_revisions

    async def record_meanwhile(b: Bus) -> list[tuple[str, int]]:
        listed = await listing(b)
        await ledger.publish(4, {"late": "late"})
        return listed

    monkeypatch.setattr(sweep, "_kv_revisions", record_meanwhile)
    await sweep.sweep(bus)
    assert await _stored(bus, "late")


async def test_a_scope_without_a_base_for_its_first_kept_version_is_not_swept(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    await ledger.publish(4, {"b": "b1"})
    await bus.js.purge_stream(LEDGER_STREAM, subject=f"xdsbus.ledger.{ledger.scope}", seq=ledger.seqs[4])
    await bus.resources.put(_sha("orphan"), b"orphan")
    with pytest.raises(sweep.Unmarkable):
        await sweep.sweep(bus)
    assert await _stored(bus, "orphan") and await _stored(bus, "a1")


def test_object_store_mtimes_parse() -> None:
    assert window.mtime_ns("2026-12-07T10:00:00.123456789Z") == 1796637600123456000
    assert window.mtime_ns("2026-12-07T10:00:00.123456+00:00") == 1796637600123456000
    assert window.mtime_ns("") is None
    assert window.mtime_ns("yesterday") is None


async def test_a_sweep_given_an_earlier_fence_keeps_what_was_written_after_it(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    await bus.resources.put(_sha("before"), b"before")
    fence = await sweep.read_fence(bus)
    await bus.resources.put(_sha("after"), b"after")
    swept = await sweep.sweep(bus, fence)
    assert swept.kv_removed == 1
    assert not await _stored(bus, "before")
    assert await _stored(bus, "after") and await _stored(bus, "a1")


async def test_records_purged_while_the_sweep_reads_them_are_covered_by_the_base(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1", "b": "b1"})
    await ledger.publish(4, {"b": "b2"})
    await ledger.publish(6, {"c": "c1"})
    await ledger.base(6, dict(ledger.resources))
    entries = [entry async for entry in reader.records(bus, ledger.scope)]

    async def version_4_purged_mid_read(b: Bus, scope: str, *, start_seq: int = 0):  # type: ignore[no-untyped-def]
        # What a reader sees when the scope's own leader purges below base 6 after version 2 was read.
        for entry in entries:
            if entry.stream_seq >= start_seq and entry.record.version != 4:
                yield entry

    monkeypatch.setattr(reader, "records", version_4_purged_mid_read)
    await sweep.sweep(bus)
    # b2 was set by version 4, which the sweep never read: it is in base 6.
    for text in ("b2", "c1", "a1"):
        assert await _stored(bus, text), text
