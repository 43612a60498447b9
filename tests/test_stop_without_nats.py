"""Every long-running service stops cleanly on SIGTERM while NATS is unreachable (docs/design.md §9),
instead of retrying its connection until it is killed."""

from __future__ import annotations

import asyncio
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
