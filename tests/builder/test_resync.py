"""Resyncs and duplicates as the builder sees them (docs/design.md §4): the sync_end list decides what is
removed, a stale epoch decides nothing, a chunked list decides only when complete, and repeated facts change
nothing."""

from __future__ import annotations

from tests.builder.support import (
    Marker,
    cluster,
    head_version,
    records,
    resources_at,
    running_builder,
    wait_for_caught_up,
    wait_for_version,
)
from tests.support.objects import service
from tests.support.sources import ScriptedSource
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.events import EVENTS_STREAM, PROCESS_ATTEMPTS, Event, Op, SyncEnd, encode, subject_for
from xdsbus.fold.reading import last_event_seq
from xdsbus_dev.harness.processes import eventually


async def clusters_at(bus, version: int) -> set[str]:
    return {key.name for key in await resources_at(bus, version) if key.type_url == CLUSTER}


async def test_resync_removes_what_vanished_from_the_source(bus):
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.resync({"Service": {"default/a": service("a"), "default/b": service("b")}})
        first = await wait_for_caught_up(bus)
        assert await clusters_at(bus, first.version) == {cluster("a"), cluster("b")}

        # The source lists only a now (b was deleted while the watcher was away).
        await src.resync({"Service": {"default/a": service("a")}})
        second = await wait_for_caught_up(bus)

    assert second.version > first.version
    assert await clusters_at(bus, second.version) == {cluster("a")}
    removed = {(r.type_url.rsplit(".", 1)[-1], r.name) for r in second.changes.removed}
    assert removed == {("Cluster", cluster("b")), ("ClusterLoadAssignment", cluster("b"))}
    assert not second.changes.changed, "a, listed again with the same content, must not change"


async def test_stale_sync_end_decides_nothing(bus):
    src = ScriptedSource(bus)
    marker = Marker(bus)
    async with running_builder(bus):
        await marker.setup()
        await src.put(service("a"))
        await src.put(service("b"))
        old_epoch = await src.begin_sync(["Service"])
        new_epoch = await src.begin_sync(["Service"])
        assert new_epoch > old_epoch
        # The superseded resync ends listing nothing: it must delete nothing.
        await src.end_sync(old_epoch, {"Service": []})
        after_stale = await wait_for_version(bus, await marker.bump())
        assert {cluster("a"), cluster("b")} <= await clusters_at(bus, after_stale.version)

        # The current one decides.
        await src.end_sync(new_epoch, {"Service": ["default/a"]})
        after_current = await wait_for_caught_up(bus)
    clusters = await clusters_at(bus, after_current.version)
    assert cluster("a") in clusters and cluster("b") not in clusters


async def _publish_sync_end(bus, source: str, epoch: int, keys: list[str], part: int, parts: int) -> None:
    """One part of a chunked sync_end, as a watcher with more than SYNC_END_CHUNK keys sends it."""
    event = Event(
        source=source,
        kind="Service",
        op=Op.SYNC_END,
        epoch=epoch,
        body=SyncEnd(keys=keys, part=part, parts=parts),
    )
    await bus.js.publish(
        subject_for(source, "Service"), encode(event), headers={"Nats-Msg-Id": PROCESS_ATTEMPTS.next(event)}
    )


async def test_chunked_sync_end_decides_after_the_last_part(bus):
    src = ScriptedSource(bus)
    marker = Marker(bus)
    async with running_builder(bus):
        await marker.setup()
        epoch = await src.begin_sync(["Service"])
        for name in ("a", "b", "c"):
            await src.put(service(name))
        await _publish_sync_end(bus, src.source, epoch, ["default/a"], part=0, parts=2)
        half = await wait_for_version(bus, await marker.bump())
        assert {cluster("a"), cluster("b"), cluster("c")} <= await clusters_at(bus, half.version), (
            "the first of two sync_end parts deleted something"
        )

        await _publish_sync_end(bus, src.source, epoch, ["default/c"], part=1, parts=2)
        done = await wait_for_caught_up(bus)
    clusters = await clusters_at(bus, done.version)
    assert cluster("a") in clusters and cluster("c") in clusters
    assert cluster("b") not in clusters


async def _builder_acked(bus, seq: int) -> bool:
    """The builder acknowledges events once it has folded (and published) them."""
    consumers = await bus.js.consumers_info(EVENTS_STREAM)
    return any(
        c.name.startswith("xdsbus-builder-default") and c.ack_floor.stream_seq >= seq for c in consumers
    )


async def test_duplicate_facts_change_nothing(bus):
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.put(service("a"))
        await src.put(service("b", ports=(80, 8080)))
        version = (await wait_for_caught_up(bus)).version
        stored = await last_event_seq(bus)

        # The same facts again (a restart's resync, a second replica) are stored, since message ids name
        # publish attempts (docs/design.md §4), and folded into no version.
        await src.put(service("a"))
        await ScriptedSource(bus).put(service("b", ports=(80, 8080)))
        # So is the same body under another revision.
        await src.upsert("Service", "default/a", service("a"), rev="12345")
        await src.upsert("Service", "default/b", service("b", ports=(80, 8080)), rev="67890")
        dup_seq = await last_event_seq(bus)
        assert dup_seq == stored + 4
        await eventually(lambda: _builder_acked(bus, dup_seq), what="the builder to consume the duplicates")
        assert await head_version(bus) == version, "a duplicate upsert made a new version"

        # And the next real change is a version of its own, listing only what changed.
        await src.put(service("c"))
        after = await wait_for_caught_up(bus)
    recs = await records(bus)
    assert [r.version for r in recs][-2:] == [version, after.version]
    assert after.first_seq == version + 1, "the version after the duplicates must cover them"
    changed = {(r.type_url.rsplit(".", 1)[-1], r.name) for r in after.changes.changed}
    assert changed == {("Cluster", cluster("c")), ("ClusterLoadAssignment", cluster("c"))}
