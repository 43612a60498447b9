"""`xdsbus-builder` killed with SIGKILL at awkward moments and restarted while events keep coming: the
ledger continues as if nothing happened (docs/design.md §5: restarts never change a version), and every
version is still what replay and a fresh translation of the log compute."""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest

from tests.builder.support import (
    FAST_FLAGS,
    SCOPE,
    Marker,
    assert_chain,
    builder_process,
    head_version,
    random_change,
    records,
    resources_at,
    table_of,
    translate_whole_log,
    versions_logged,
    wait_for_caught_up,
    wait_for_version,
)
from tests.support.sources import ScriptedSource
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import checkpoints
from xdsbus.replay import replay_to
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_dev.harness.processes import Service, eventually

# Leases expire fast so a restarted builder does not wait long for its predecessor's lease.
LEASE_TTL = 1.5


class Producer:
    """Publishes changes continuously in the background, as a busy cluster does."""

    def __init__(self, src: ScriptedSource, seed: int) -> None:
        self.src = src
        self.rng = random.Random(seed)
        self.published = 0
        self.task: asyncio.Task[None] | None = None

    def start(self, count: int) -> None:
        assert self.task is None or self.task.done()
        self.task = asyncio.create_task(self._run(count))

    async def _run(self, count: int) -> None:
        for _ in range(count):
            await random_change(self.src, self.rng)
            self.published += 1
            # Spread the events over time so kills land while they are arriving (pacing, not syncing).
            await asyncio.sleep(0.003)

    async def finish(self) -> None:
        assert self.task is not None
        await self.task


@pytest.mark.slow
async def test_kill9_and_restart_keeps_the_ledger_intact(nats_server, bus_with_lease_ttl, tmp_path: Path):
    bus = await bus_with_lease_ttl(LEASE_TTL)
    generation = 0

    def start_builder() -> Service:
        nonlocal generation
        generation += 1
        return builder_process(
            nats_server.url, tmp_path, f"b{generation}", *FAST_FLAGS, "--lease-ttl", str(LEASE_TTL)
        ).start()

    builders: list[Service] = []
    try:
        marker = Marker(bus)
        producer = Producer(ScriptedSource(bus), seed=7)
        builders.append(start_builder())
        await marker.setup()
        await wait_for_caught_up(bus)

        # 1. Killed right after a version appears (while it may be storing a checkpoint or acking).
        producer.start(120)
        seen = await head_version(bus)
        await eventually(lambda: _head_beyond(bus, seen), what="a new version")
        builders[-1].kill9()
        builders.append(start_builder())

        # 2. Killed mid-burst: events are arriving and some are folded but not yet published.
        start = await last_event_seq(bus)
        await eventually(lambda: _log_beyond(bus, start + 15), what="more events")
        await eventually(lambda: _head_beyond(bus, start), what="the restarted builder to publish")
        builders[-1].kill9()
        builders.append(start_builder())

        # 3. Killed right after it saved a checkpoint, with events still arriving.
        await producer.finish()
        producer.start(100)
        saved = await checkpoints.sequences(bus, SCOPE)
        await eventually(lambda: _new_checkpoint(bus, saved), what="a new checkpoint")
        builders[-1].kill9()
        builders.append(start_builder())

        await producer.finish()
        final = await wait_for_version(bus, await marker.bump(), timeout=30)
    finally:
        for builder in builders:
            builder.terminate()

    recs = await records(bus)
    assert_chain(recs)
    assert recs[-1].version == final.version

    # What each builder says it published is in the ledger, and no two builders published one version.
    # (A kill can land between a publish and its log line, so a killed builder may not log its last one.)
    published = [v for b in builders for v in versions_logged(b.output())]
    assert len(set(published)) == len(published), f"a version was published twice: {sorted(published)}"
    assert set(published) <= {r.version for r in recs}
    assert len(recs) - len(published) <= len(builders) - 1
    # The restarts restored from checkpoints, not (only) from the beginning of the log.
    restored = [
        int(m)
        for b in builders[1:]
        for m in re.findall(r"restored scope default: checkpoint at (\d+)", b.output())
    ]
    assert len(restored) >= len(builders) - 1
    assert any(seq > 0 for seq in restored), f"no restart used a checkpoint: {restored}"

    settings = TranslatorSettings.parse(final.translator_version)
    fresh = await translate_whole_log(bus, final.version, settings)
    assert fresh.table.digest() == final.digest, "the head differs from a fresh translation of the log"
    for rec in recs:
        result, replayed = await replay_to(bus, SCOPE, rec.version, settings)
        assert result.digest == rec.digest, f"replay of version {rec.version} differs from the ledger"
        assert table_of(replayed) == await resources_at(bus, rec.version), f"resources of {rec.version}"


async def _head_beyond(bus, version: int) -> bool:
    return await head_version(bus) > version


async def _log_beyond(bus, seq: int) -> bool:
    return await last_event_seq(bus) > seq


async def _new_checkpoint(bus, before: list[int]) -> bool:
    return bool(set(await checkpoints.sequences(bus, SCOPE)) - set(before))


async def test_restart_after_kill9_publishes_nothing_twice(nats_server, bus_with_lease_ttl, tmp_path: Path):
    """The quick version: a builder killed when idle, restarted, republishes nothing; the next change is
    the next version, whose parent is the last one before the crash."""
    bus = await bus_with_lease_ttl(LEASE_TTL)
    marker = Marker(bus)
    first = builder_process(nats_server.url, tmp_path, "first", *FAST_FLAGS, "--lease-ttl", str(LEASE_TTL))
    second = builder_process(nats_server.url, tmp_path, "second", *FAST_FLAGS, "--lease-ttl", str(LEASE_TTL))
    try:
        first.start()
        await marker.setup()
        before = await wait_for_caught_up(bus)
        first.kill9()
        second.start()
        await eventually(lambda: _restored(second), what="the restarted builder to restore")
        assert await head_version(bus) == before.version
        after = await wait_for_version(bus, await marker.bump())
    finally:
        first.terminate()
        second.terminate()
    recs = await records(bus)
    assert_chain(recs)
    assert recs[-1].parent == before.version
    assert versions_logged(second.output()) == [after.version]


async def _restored(builder: Service) -> bool:
    return "restored scope default" in builder.output()
