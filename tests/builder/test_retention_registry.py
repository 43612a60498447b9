"""Retention never purges what the registry watchers need (docs/design.md §4): a registry watcher started
long after its McpBridge was published, once the builder's retention purged that event, still runs the
registry from the default scope's checkpoint, and its services keep reaching the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.builder.support import FAST_FLAGS, Marker, builder_process, head_version, resources_at
from tests.registry.support import Source, World, mcpbridge, registry, service
from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.reading import last_event_seq
from xdsbus.registry.bridge_follower import BridgeFollower
from xdsbus.registry.leadership import Leadership, lease_name
from xdsbus.registry.supervisor import Supervisor
from xdsbus_dev.harness.processes import eventually

ONE = "fake/one"


async def _in_ledger(bus: Bus, hostname: str) -> bool:
    version = await head_version(bus)
    return version > 0 and any(hostname in key.name for key in await resources_at(bus, version))


async def test_a_registry_watcher_started_after_its_mcpbridge_was_purged_still_serves(
    bus: Bus, nats_server, tmp_path: Path
) -> None:
    # Checkpoints leave the history window within a second, so retention purges the events below them.
    flags = (*FAST_FLAGS, "--checkpoint-seconds", "0.2", "--checkpoints-keep", "1", "--history-window", "1")
    builder = builder_process(nats_server.url, tmp_path, "builder", *flags).start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        await Source(bus, "k8s/prod").put(mcpbridge(registry("fake", "one")))
        bridge_seq = await last_event_seq(bus)
        marker = Marker(bus)
        await marker.setup()

        async def bridge_purged() -> bool:
            await marker.bump()
            return (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq > bridge_seq

        await eventually(bridge_purged, timeout=30, interval=0.3, what="the McpBridge event purged")

        # The watcher starts now: the McpBridge is only in the default scope's checkpoint.
        world = World()
        world.put(ONE, service("a"))
        follower = BridgeFollower(bus, {"fake"})
        supervisor = Supervisor(
            bus, world.factory, follower.credentials, stop=stop, retry_base=0.05, retry_cap=0.2
        )
        leadership = Leadership(
            bus, lease_name("watch-fake", "default"), "late", follower, supervisor, ttl=2.0, stop=stop
        )
        tasks += [asyncio.create_task(follower.run(stop)), asyncio.create_task(leadership.run())]

        async def running() -> bool:
            return world.running[ONE] == 1

        await eventually(running, timeout=15, what="the registry running from the checkpoint")
        await eventually(lambda: _in_ledger(bus, "a.fake"), timeout=15, what="a.fake in the ledger")
        world.put(ONE, service("b"))
        await eventually(lambda: _in_ledger(bus, "b.fake"), timeout=15, what="b.fake in the ledger")
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 15)
        builder.terminate()
