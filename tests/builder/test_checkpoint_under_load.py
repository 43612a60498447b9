"""A checkpoint the builder takes while events keep coming is exactly the state a replay reaches at its
sequence (docs/design.md §5): the builder folds on while it encodes, from a snapshot of the state."""

from __future__ import annotations

import asyncio
import random

import pytest

from tests.builder.support import (
    SCOPE,
    Marker,
    random_change,
    records,
    resources_at,
    running_builder,
    wait_for_caught_up,
)
from tests.support.objects import endpoint_slice, service
from tests.support.sources import ScriptedSource
from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints
from xdsbus.objects import read_object
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus_builder import builder as builder_module
from xdsbus_dev.harness.processes import eventually


async def test_a_checkpoint_taken_under_load_equals_the_replay_at_its_sequence(
    bus: Bus, nats_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tiny encoding steps: each checkpoint gives the loop back hundreds of times, and the fold of the
    # events arriving meanwhile runs between them.
    monkeypatch.setattr(checkpoints, "CHUNK_ITEMS", 1)
    monkeypatch.setattr(checkpoints, "COMPRESS_SLICE", 64)
    src = ScriptedSource(bus)
    marker = Marker(bus)
    rng = random.Random(20261207)
    loaded = asyncio.Event()

    async def load() -> None:
        """Events without pause, so every checkpoint is encoded while more are folded."""
        while not loaded.is_set():
            await random_change(src, rng)

    async def enough_checkpoints() -> list[int] | None:
        seqs = await checkpoints.sequences(bus, SCOPE)
        return seqs if len(seqs) >= 5 else None

    async with running_builder(bus, checkpoint_events=15):
        await marker.setup()
        producer = asyncio.create_task(load())
        try:
            seqs = await eventually(enough_checkpoints, what="5 checkpoints under load")
        finally:
            loaded.set()
            await producer
        await marker.bump()
        await wait_for_caught_up(bus)

    for seq in seqs:
        name = f"{SCOPE}.seq-{seq:020d}"
        data = await read_object(bus.js, bus.checkpoints, name)
        assert data.startswith(checkpoints.MAGIC + bytes([checkpoints.FORMAT]))
        saved = checkpoints.decode(data)
        replayed = FoldState()
        await fold_until(bus, replayed, seq)
        assert saved.state == replayed, f"checkpoint at {seq} differs from the replay to {seq}"
        published = {ResourceKey(t, n): sha for t, n, sha in saved.published}
        assert published == await resources_at(bus, saved.ledger_version)


async def test_a_builder_behind_the_log_checkpoints_once_caught_up(
    bus: Bus, nats_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small fetches and a short debounce: the builder cuts several versions while the backlog lasts,
    # each of which would take a checkpoint every 100 events if it did not wait.
    first, before = await _set_up_for_a_backlog(bus, monkeypatch)
    # A backlog the next builder finds in the log, as a cold load: every event a new object, fewer
    # events than CHECKPOINT_DEFER_FACTOR times checkpoint_events, so no checkpoint is owed before it
    # catches up.
    src = ScriptedSource(bus)
    for n in range(475):
        await src.put(service(f"backlog-{n}"))
        await src.put(endpoint_slice(f"backlog-{n}", [f"10.9.{n // 250}.{n % 250 + 1}"]))
    head = await last_event_seq(bus)

    async with running_builder(bus, checkpoint_events=100, debounce_max=0.005):
        new_checkpoints = await eventually(
            lambda: _taken_since(bus, before), what="a checkpoint after the backlog"
        )
        await wait_for_caught_up(bus)
    assert new_checkpoints == [head]
    # The backlog was folded into several versions, each a point where a checkpoint was due.
    assert len([r for r in await records(bus) if r.version > first.version]) >= 3


async def test_a_builder_behind_a_log_of_changes_to_few_objects_checkpoints_as_it_goes(
    bus: Bus, nats_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A backlog of 950 changes to one slice: a checkpoint (a handful of objects) costs less than the
    # events it saves a replay, so the builder takes the checkpoints due while behind instead of one at
    # the end, and a replay to any of its versions folds few events (docs/design.md §8).
    _, before = await _set_up_for_a_backlog(bus, monkeypatch)
    src = ScriptedSource(bus)
    await src.put(service("backlog"))
    for n in range(949):
        await src.put(endpoint_slice("backlog", [f"10.9.{n // 250}.{n % 250 + 1}"]))
    head = await last_event_seq(bus)

    async def at_head() -> list[int] | None:
        new = await _taken_since(bus, before)
        return new if new and new[-1] == head else None

    async with running_builder(bus, checkpoint_events=100, debounce_max=0.005):
        new_checkpoints = await eventually(at_head, what="a checkpoint at the head of the backlog")
    # The whole backlog was in the log before the builder started: a checkpoint before its head was
    # taken while behind. Deferred, the backlog would have one checkpoint, at its head.
    assert new_checkpoints[0] < head, f"checkpoints at {new_checkpoints}: deferred while behind"


async def _set_up_for_a_backlog(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> tuple[ledger_pb2.Version, set[int]]:
    """Fetches of 50 events (a backlog takes several), the marker set up by a builder that caught up:
    the head record then, and the checkpoints taken so far."""
    monkeypatch.setattr(builder_module, "FETCH_BATCH", 50)
    marker = Marker(bus)
    async with running_builder(bus, checkpoint_events=100):
        await marker.setup()
        first = await wait_for_caught_up(bus)
    return first, set(await checkpoints.sequences(bus, SCOPE))


async def _taken_since(bus: Bus, before: set[int]) -> list[int] | None:
    """Checkpoint sequences not in `before`, in order; None while there is none."""
    new = sorted(seq for seq in await checkpoints.sequences(bus, SCOPE) if seq not in before)
    return new or None
