"""No fold crosses a gap (docs/design.md §4): when the events after the builder's checkpoint (or after
nothing, without one) are no longer all in the log, the builder publishes nothing, reports the gap and
keeps its lease; `xdsbus replay` past the gap refuses. Nothing is deleted because its events aged out."""

from __future__ import annotations

from pathlib import Path

from tests.builder.support import (
    FAST_FLAGS,
    SCOPE,
    Marker,
    builder_process,
    cli,
    head_version,
    lease_holder,
    records,
    resources_at,
    run_cli,
    wait_for_caught_up,
    wait_for_version,
)
from tests.support.objects import endpoint_slice, service
from tests.support.sources import ScriptedSource
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import checkpoints
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus_dev.harness.processes import eventually

LEASE_TTL = 1.5


async def _gap_status(bus: Bus) -> ObjectStatus | None:
    return await status_store.read(bus, "Builder", f"builder/{SCOPE}", "gap")


async def _publish_victim(bus: Bus) -> tuple[Marker, ledger_pb2.Version]:
    """A Service with endpoints, folded into a version by the running builder; its marker and head."""
    marker = Marker(bus)
    await marker.setup()
    src = ScriptedSource(bus, "test/victim")
    await src.put(service("victim"))
    await src.put(endpoint_slice("victim", ["10.9.0.1"]))
    await marker.bump()
    return marker, await wait_for_caught_up(bus)


async def _delete_checkpoints(bus: Bus) -> None:
    for seq in await checkpoints.sequences(bus, SCOPE):
        await bus.checkpoints.delete(f"{SCOPE}.seq-{seq:020d}")


async def test_a_restore_over_a_gap_publishes_nothing(nats_server, bus_with_lease_ttl, tmp_path: Path):
    bus = await bus_with_lease_ttl(LEASE_TTL)
    flags = (*FAST_FLAGS, "--lease-ttl", str(LEASE_TTL))
    first = builder_process(nats_server.url, tmp_path, "first", *flags)
    second = builder_process(nats_server.url, tmp_path, "second", *flags)
    try:
        first.start()
        marker, before = await _publish_victim(bus)
        victim = {key for key in await resources_at(bus, before.version) if "victim" in key.name}
        assert victim, "the victim Service made no resources"
        first.terminate()

        # The checkpoints are gone and the log now starts after a gap: only its last event is left.
        await _delete_checkpoints(bus)
        last = await last_event_seq(bus)
        await bus.js.purge_stream(EVENTS_STREAM, seq=last)
        missing = f"events 1..{last - 1} are missing"

        second.start()
        # A change after the gap: folded over the gap it would make a version without the victim.
        await marker.bump()

        async def gap_or_new_version() -> bool:
            return await _gap_status(bus) is not None or await head_version(bus) > before.version

        await eventually(gap_or_new_version, timeout=20, what="the gap reported (or a new version)")
        assert await head_version(bus) == before.version, "a version was published over the gap"
        gap = await _gap_status(bus)
        assert gap is not None and gap.state == Verdict.REJECTED
        assert missing in gap.reason, gap.reason
        # The builder keeps its lease (a standby would meet the same gap) and says why it stopped.
        assert await lease_holder(bus) == "second"
        assert missing in second.output()

        shown = await cli(nats_server.url, "status", as_json=False)
        assert f"Builder/gap (builder/{SCOPE}): rejected: {missing}" in shown

        # Replay past the gap refuses, naming the missing range, rather than folding over it.
        rc, _, err = await run_cli(nats_server.url, "replay", "--seq", str(last + 1))
        assert rc != 0
        assert missing in err, err
    finally:
        first.terminate()
        second.terminate()
    assert (await records(bus))[-1].version == before.version
    assert victim <= set(await resources_at(bus, before.version))


async def test_a_restored_checkpoint_ends_the_gap(nats_server, bus_with_lease_ttl, tmp_path: Path):
    """The waiting builder looks again: once an operator puts back a checkpoint at or after the gap, it
    clears the report and publishes the next change on top of what it held."""
    bus = await bus_with_lease_ttl(LEASE_TTL)
    # Checkpoints also when idle, so the last event gets one to back up.
    flags = (*FAST_FLAGS, "--checkpoint-seconds", "0.2", "--lease-ttl", str(LEASE_TTL))
    first = builder_process(nats_server.url, tmp_path, "first", *flags)
    second = builder_process(nats_server.url, tmp_path, "second", *flags)
    try:
        first.start()
        marker, before = await _publish_victim(bus)

        async def checkpoint_at_head() -> bool:
            return before.version in await checkpoints.sequences(bus, SCOPE)

        await eventually(checkpoint_at_head, what="a checkpoint at the head")
        first.terminate()
        name = f"{SCOPE}.seq-{before.version:020d}"
        backup = (await bus.checkpoints.get(name)).data
        assert backup
        await _delete_checkpoints(bus)
        await bus.js.purge_stream(EVENTS_STREAM, seq=before.version)

        second.start()
        await eventually(lambda: _gap_status(bus), timeout=20, what="the gap reported")
        await checkpoints.save(bus, SCOPE, before.version, backup)

        async def gap_cleared() -> bool:
            return await _gap_status(bus) is None

        await eventually(gap_cleared, timeout=20, what="the gap cleared")
        after = await wait_for_version(bus, await marker.bump())
    finally:
        first.terminate()
        second.terminate()
    assert after.parent == before.version
    victim = {key for key in await resources_at(bus, before.version) if "victim" in key.name}
    assert victim and victim <= set(await resources_at(bus, after.version))
    assert "the gap in the event log is resolved" in second.output()


async def test_after_retention_purged_the_log_a_lost_checkpoint_never_costs_resources(
    nats_server, bus_with_lease_ttl, tmp_path: Path
):
    """Retention purges only below the oldest kept checkpoint (docs/design.md §4): with the newest one
    corrupted and the leader SIGKILLed, the next leader restores from the one before it and its tail. With
    every checkpoint gone too, the next one reports the gap and publishes nothing."""
    bus = await bus_with_lease_ttl(LEASE_TTL)
    flags = (
        *FAST_FLAGS,
        "--checkpoint-seconds",
        "0.2",
        "--checkpoints-keep",
        "2",
        # Checkpoints leave the window within a second, so retention purges the events below them.
        "--history-window",
        "1",
        "--lease-ttl",
        str(LEASE_TTL),
    )
    builders = [
        builder_process(nats_server.url, tmp_path, name, *flags) for name in ("first", "second", "third")
    ]
    first, second, third = builders
    try:
        first.start()
        marker, before = await _publish_victim(bus)
        victim = {key for key in await resources_at(bus, before.version) if "victim" in key.name}

        async def purged_by_retention() -> bool:
            await wait_for_version(bus, await marker.bump())
            first_seq = (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq
            return first_seq > 1 and len(await checkpoints.sequences(bus, SCOPE)) >= 2

        await eventually(purged_by_retention, timeout=30, interval=0.3, what="events purged by retention")
        # The leader killed, and its newest checkpoint damaged.
        first.kill9()
        first_seq = (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq
        kept = await checkpoints.sequences(bus, SCOPE)
        assert first_seq <= kept[0] + 1, "purged past the oldest kept checkpoint"
        await bus.checkpoints.put(f"{SCOPE}.seq-{kept[-1]:020d}", b"damaged")
        # The next leader restores from the checkpoint before it, whose tail is still in the log.
        second.start()
        after = await wait_for_version(bus, await marker.bump())
        assert await _gap_status(bus) is None
        assert f"checkpoint {kept[-1]} of {SCOPE} unreadable" in second.output()
        assert victim <= set(await resources_at(bus, after.version))

        # The leader killed and every checkpoint gone: a gap, reported, and nothing published over it.
        second.kill9()
        await _delete_checkpoints(bus)
        head = await head_version(bus)
        third.start()
        await marker.bump()
        await eventually(lambda: _gap_status(bus), timeout=20, what="the gap reported")
        assert await head_version(bus) == head
    finally:
        for builder in builders:
            builder.terminate()
    versions = [r for r in await records(bus) if not r.HasField("term") and r.version >= before.version]
    assert versions and min(r.resource_count for r in versions) >= before.resource_count
