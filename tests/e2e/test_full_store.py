"""A full event log (docs/design.md §4): with the log's cap reached, new events are refused loudly, the
last good configuration keeps serving, nothing stored is lost, and publishing resumes once the builder
purges below a new checkpoint, or once `xdsbus layout --apply` raises the cap."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from pathlib import Path

import pytest

from tests.support.sources import ScriptedSource
from xdsbus.events import EVENTS_STREAM
from xdsbus.ledger import reader
from xdsbus_dev.harness.processes import Service, eventually, tool
from xdsbus_dev.harness.stack import NAMESPACE, Stack, service_manifest

pytestmark = pytest.mark.slow

FILLERS = 60
# Each filler Service carries this much padding: the fillers need about 3 times the room left.
PADDING = 1500
ROOM = FILLERS * PADDING // 3


def filler(i: int) -> dict[str, object]:
    manifest = service_manifest(f"filler-{i}", 8080)
    manifest["metadata"]["annotations"] = {"padding": "x" * PADDING}  # type: ignore[index]
    return manifest


async def _layout_apply(url: str, events_cap: int) -> subprocess.CompletedProcess[str]:
    """`xdsbus layout --apply` with the event log capped at `events_cap` bytes."""
    return await asyncio.to_thread(
        subprocess.run,
        [tool("xdsbus"), "layout", "--apply", "--nats-url", url],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "XDSBUS_EVENTS_MAX_BYTES": str(events_cap)},
    )


async def test_a_full_event_log_refuses_loudly_and_resumes_after_the_builder_purges(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1) as stack:
        await stack.wait_for_pod("/a", "echo-a-")
        async with stack.bus() as bus:
            before = (await bus.js.stream_info(EVENTS_STREAM)).state
            # No builder while the log fills: nothing purges it.
            await stack.stop_builder()
            cap = before.bytes + ROOM
            layout = await _layout_apply(stack.nats.url, cap)
            assert layout.returncode == 0, layout.stdout + layout.stderr

            for i in range(FILLERS):
                stack.write(f"filler-{i}.yaml", [filler(i)])
            assert stack.watch_file is not None

            async def refused() -> bool:
                return "the event log is full" in stack.watch_file.output()  # type: ignore[union-attr]

            await stack.wait(refused, timeout=30, what="watch-file saying the event log is full")
            full = (await bus.js.stream_info(EVENTS_STREAM)).state
            # Nothing stored was dropped to make room, and the last good configuration still serves.
            assert full.first_seq == before.first_seq
            assert full.last_seq > before.last_seq
            assert full.bytes <= cap
            await stack.wait_for_pod("/a", "echo-a-")

            # The builder comes back: near the cap it checkpoints, purges below, and the log has room.
            assert stack.builder is not None
            stack.builder = Service(stack.builder.argv, stack.log_dir / "builder-2.log").start()
            stack.stopped.discard("builder")

            async def every_filler_published() -> bool:
                head = await reader.head(bus, "default")
                if head is None:
                    return False
                resources = await reader.resource_set(bus, "default", head.record.version)
                clusters = {key.name for key in resources}
                return all(
                    f"outbound|80||filler-{i}.{NAMESPACE}.svc.cluster.local" in clusters
                    for i in range(FILLERS)
                )

            await stack.wait(every_filler_published, timeout=40, what="every filler Service in the ledger")
            assert "history narrowed to the checkpoint" in stack.builder.output()
            await stack.wait_for_pod("/a", "echo-a-")


async def test_a_publish_refused_by_a_full_log_goes_through_once_the_cap_is_raised(
    nats_server, bus, caplog: pytest.LogCaptureFixture
) -> None:
    """The watcher keeps retrying what a full log refused (a bus failure, logged as an error), and the
    publish goes through once `xdsbus layout --apply` raises the cap; nothing stored is dropped."""
    source = ScriptedSource(bus, "test/full")
    await source.put(filler(0))
    before = (await bus.js.stream_info(EVENTS_STREAM)).state
    small = await _layout_apply(nats_server.url, before.bytes + PADDING // 2)
    assert small.returncode == 0, small.stdout + small.stderr

    caplog.set_level(logging.ERROR, logger="xdsbus.watcher")
    pending = asyncio.ensure_future(source.put(filler(1)))

    async def refused() -> bool:
        return "the event log is full" in caplog.text

    await eventually(refused, timeout=15, what="the refusal logged")
    assert not pending.done()
    assert (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq == before.first_seq

    raised = await _layout_apply(nats_server.url, before.bytes * 10)
    assert raised.returncode == 0, raised.stdout + raised.stderr
    await asyncio.wait_for(pending, 15)
    after = (await bus.js.stream_info(EVENTS_STREAM)).state
    assert (after.first_seq, after.last_seq) == (before.first_seq, before.last_seq + 1)
