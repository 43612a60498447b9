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
    resources_at,
    running_builder,
    wait_for_caught_up,
)
from tests.support.sources import ScriptedSource
from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.fold.reading import fold_until
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints
from xdsbus.objects import read_object
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
