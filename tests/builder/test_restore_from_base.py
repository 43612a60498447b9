"""A builder restores from the newest ledger base when the records before it are purged (docs/design.md
§5), and, leading with a short history window, writes bases, purges the ledger outside the window and
sweeps the bodies no kept version names."""

from __future__ import annotations

import time

from nats.js.errors import KeyNotFoundError

from tests.builder.support import (
    SCOPE,
    cluster,
    head_version,
    resources_at,
    running_builder,
    wait_for_caught_up,
)
from tests.support.objects import endpoint_slice, service
from tests.support.sources import ScriptedSource
from xdsbus.bus import LEDGER_STREAM, Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.ledger import bases, checkpoints, reader, window
from xdsbus.ledger.store import fetch_body
from xdsbus_builder.restore import restore
from xdsbus_dev.harness.processes import eventually

FAR_FUTURE = time.time_ns() + 10**15


async def _first_kept_version(bus: Bus) -> int:
    async for entry in reader.entries(bus, SCOPE):
        return entry.record.version
    return 0


async def test_a_restore_starts_from_the_base_when_older_versions_are_purged(bus: Bus) -> None:
    src = ScriptedSource(bus)
    async with running_builder(bus, base_every=2, checkpoint_events=3):
        for name in "abcdefgh":
            await src.put(service(name))
            await src.put(endpoint_slice(name, ["10.0.0.1"]))
            await wait_for_caught_up(bus)

        async def based() -> bool:
            stored = await bases.stored(bus, SCOPE)
            return bool(stored) and stored[-1].version >= 3

        await eventually(based, what="ledger bases")
    head = await head_version(bus)
    expected = await resources_at(bus, head)
    # Only the oldest checkpoint left: its records are about to be purged.
    seqs = await checkpoints.sequences(bus, SCOPE)
    for seq in seqs[1:]:
        await bus.checkpoints.delete(f"{SCOPE}.seq-{seq:020d}")
    purged = await window.purge_outside(bus, SCOPE, 1.0, now_ns=FAR_FUTURE)
    assert purged is not None
    first_kept = await _first_kept_version(bus)
    assert first_kept == purged.kept_base > (await checkpoints.load_at_or_before(bus, SCOPE)).ledger_version  # type: ignore[union-attr]

    restored = await restore(bus, SCOPE)
    assert restored.head_version == head
    assert restored.committed == expected

    # And it goes on leading from there: the next version is the head's child, adds the new Service's
    # resources to the head's and adds up to its own digest (the events before the oldest checkpoint
    # may be purged by retention, so no fresh translation of the whole log here).
    async with running_builder(bus, base_every=2):
        await src.put(service("z"))
        record = await wait_for_caught_up(bus)
    assert record.parent == head
    after = await resources_at(bus, record.version)
    assert reader.digest_matches(record, after)
    assert set(expected) < set(after)
    assert ResourceKey(CLUSTER, cluster("z")) in after


async def test_a_leader_purges_outside_a_short_window_and_sweeps_old_bodies(bus: Bus) -> None:
    src = ScriptedSource(bus)
    await src.put(service("a"))
    await src.put(endpoint_slice("a", ["10.0.0.1"]))
    async with running_builder(bus, base_every=1, history_window=1.0):
        first = await wait_for_caught_up(bus)
        old = await resources_at(bus, first.version)
        i = 2
        while True:
            await src.put(endpoint_slice("a", [f"10.0.0.{i}"]))
            await wait_for_caught_up(bus)
            i += 1
            if await _first_kept_version(bus) > first.version:
                break
            assert i < 200, "the ledger was never purged"

        head = await reader.head(bus, SCOPE)
        assert head is not None
        gone = set(old.values()) - set((await resources_at(bus, head.record.version)).values())
        assert gone, "the endpoint change left the first version's bodies all in use"

        async def swept() -> bool:
            for sha in gone:
                try:
                    await bus.resources.get(sha)
                    return False
                except KeyNotFoundError:
                    pass
            return True

        await eventually(swept, timeout=15, what="the first version's old bodies swept")
        head = await reader.head(bus, SCOPE)
        assert head is not None
        for sha in (await resources_at(bus, head.record.version)).values():
            assert await fetch_body(bus, sha)
    info = await bus.js.stream_info(LEDGER_STREAM)
    assert info.state.messages < i
