"""A watcher killed and restarted within the stream's duplicate window loses nothing (docs/design.md §4).

Message ids name publish attempts, so what a restarted watch-file publishes (a revert, a re-created
object) is stored even when the same fact was published minutes before, and Envoy follows it. The
restarted process has the same identity (the host name), so it takes its source lease back at once. A
watcher paused past its lease, resumed after a successor took over, changes nothing Envoy serves: its
events carry its old term, which the fold drops.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import pytest
import yaml

from xdsbus_dev.harness.processes import Service, tool
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


async def test_a_watcher_paused_past_its_lease_cannot_undo_what_its_successor_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDSBUS_LEASE_TTL", "2")  # the leases bucket's TTL, and every service's
    async with Stack(tmp_path, edges=1) as stack:
        await stack.wait_for_pod("/a", "echo-a-")
        assert stack.watch_file is not None and stack.watch_file.proc is not None
        paused = stack.watch_file.proc.pid
        os.kill(paused, signal.SIGSTOP)
        # The successor reads another copy of the source, where /a goes to echo-b.
        live = tmp_path / "live"
        shutil.copytree(stack.config_dir, live)
        ingress = ingress_manifest("demo", HOST, [("/a", "echo-b"), ("/", "echo-b")])
        (live / "ingress.yaml").write_text(yaml.safe_dump(ingress))
        successor = Service(
            [
                tool("xdsbus-watch-file"),
                *("--dir", str(live), "--source-name", "e2e", "--poll-interval", "0.05"),
                *("--instance-id", "successor", "--nats-url", stack.nats.url),
            ],
            stack.log_dir / "successor.log",
        ).start()
        try:
            await stack.wait_for_pod("/a", "echo-b-")  # once the paused one's lease expired
            # While paused, its copy loses the Ingress: it would publish the delete when it wakes up.
            stack.remove("ingress.yaml")
            os.kill(paused, signal.SIGCONT)

            async def stepped_down() -> bool:
                return "lost the lease" in stack.watch_file.output()  # type: ignore[union-attr]

            await stack.wait(stepped_down, what="the resumed watcher standing by")
            # Another object through the successor: once Envoy serves it, the builder has folded the
            # resumed watcher's events too (they came before it), and its delete changed nothing.
            other = ingress_manifest("other", "other.local", [("/", "echo-a")])
            (live / "other.yaml").write_text(yaml.safe_dump(other))
            await stack.wait_for_pod("/", "echo-a-", host="other.local")
            assert (await stack.pod_for("/a") or "").startswith("echo-b-")
        finally:
            successor.terminate()
