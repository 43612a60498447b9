"""A watcher killed and restarted within the stream's duplicate window loses nothing (docs/design.md §4).

Message ids name publish attempts, so what a restarted watch-file publishes (a revert, a re-created
object) is stored even when the same fact was published minutes before, and Envoy follows it.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from xdsbus_dev.harness.stack import HOST, Stack, ingress_manifest

pytestmark = pytest.mark.slow


def kill_watch_file(stack: Stack) -> None:
    """SIGKILL watch-file by its pid, as a crash would (it sends nothing more)."""
    assert stack.watch_file is not None and stack.watch_file.proc is not None
    stack.stopped.add("watch-file")
    os.kill(stack.watch_file.proc.pid, signal.SIGKILL)
    stack.watch_file.proc.wait()


def restart_watch_file(stack: Stack) -> None:
    """A new watch-file process on the same directory and source."""
    assert stack.watch_file is not None
    stack.watch_file.start()
    stack.stopped.discard("watch-file")


async def test_a_revert_made_while_the_watcher_was_down_is_served(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1) as stack:
        await stack.wait_for_pod("/a", "echo-a-")
        # A -> B: /a moves to echo-b.
        stack.write("ingress.yaml", [ingress_manifest("demo", HOST, [("/a", "echo-b"), ("/", "echo-b")])])
        await stack.wait_for_pod("/a", "echo-b-")

        kill_watch_file(stack)
        stack.write("ingress.yaml", [stack.demo_ingress()])  # back to A
        restart_watch_file(stack)

        await stack.wait_for_pod("/a", "echo-a-", timeout=20.0)


async def test_an_object_recreated_while_the_watcher_was_down_is_served(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1) as stack:
        await stack.wait_for_pod("/a", "echo-a-")
        stack.remove("ingress.yaml")

        async def gone() -> bool:
            return (await stack.curl("/a")).status == 404

        await stack.wait(gone, what="demo.local/a no longer routed once its Ingress file is deleted")

        kill_watch_file(stack)
        stack.write("ingress.yaml", [stack.demo_ingress()])  # the same Ingress again
        restart_watch_file(stack)

        await stack.wait_for_pod("/a", "echo-a-", timeout=20.0)
        await stack.wait_for_pod("/", "echo-b-")
