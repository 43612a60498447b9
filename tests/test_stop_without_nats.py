"""Every long-running service stops cleanly on SIGTERM while NATS is unreachable (docs/design.md §9),
instead of retrying its connection until it is killed."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from xdsbus_dev.harness.processes import Service, eventually, free_port, tool

SERVICES = {
    "xdsbus-builder": [],
    "xdsbus-edge": ["--xds-listen", "127.0.0.1:{port}", "--xds-plaintext", "true"],
    "xdsbus-watch-file": ["--dir", "{dir}"],
}


@pytest.mark.parametrize("command", sorted(SERVICES))
async def test_stops_on_sigterm_while_nats_is_unreachable(tmp_path: Path, command: str) -> None:
    port = free_port()
    args = [a.format(port=free_port(), dir=tmp_path) for a in SERVICES[command]]
    service = Service(
        [tool(command), "--nats-url", f"nats://127.0.0.1:{port}", *args],
        tmp_path / f"{command}.log",
        env={
            "XDSBUS_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "XDSBUS_DEBUG_LISTEN": f"127.0.0.1:{free_port()}",
        },
    ).start()
    try:

        async def retrying() -> bool:
            return f"NATS at nats://127.0.0.1:{port}" in service.output()

        await eventually(retrying, what=f"{command} retrying its connection")
    finally:
        code = await asyncio.to_thread(service.terminate, 10.0)
    assert code == 0, service.output()


async def test_sigusr1_logs_every_task_and_the_service_goes_on(tmp_path: Path) -> None:
    # What a service that looks stuck waits for (docs/operating-on-a-cluster.md): here watch-file,
    # waiting for NATS.
    port = free_port()
    service = Service(
        [tool("xdsbus-watch-file"), "--nats-url", f"nats://127.0.0.1:{port}", "--dir", str(tmp_path)],
        tmp_path / "watch-file.log",
        env={"XDSBUS_HTTP_LISTEN": f"127.0.0.1:{free_port()}"},
    ).start()
    try:

        async def retrying() -> bool:
            return f"NATS at nats://127.0.0.1:{port}" in service.output()

        await eventually(retrying, what="watch-file retrying its connection")
        assert service.proc is not None
        service.proc.send_signal(signal.SIGUSR1)

        async def dumped() -> bool:
            return "tasks (SIGUSR1)" in service.output() and "task Task-1:" in service.output()

        await eventually(dumped, what=f"the task dump:\n{service.output()}")
        assert service.proc.poll() is None, "SIGUSR1 ended the service"
    finally:
        code = await asyncio.to_thread(service.terminate, 10.0)
    assert code == 0, service.output()
