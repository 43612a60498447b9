"""`xdsbus up` (what `make run` runs): the whole local stack on the demo's fixed ports, the printed curl
answering from the right echo backend, a file edit changing the answer, and Ctrl-C stopping everything."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
from pathlib import Path

import pytest

from xdsbus_dev.harness import http
from xdsbus_dev.harness.processes import free_port, tool
from xdsbus_dev.harness.stack import edge_installed
from xdsbus_dev.local_stack import CONSOLE_PORT, ECHO_BACKENDS, EDGES, ENVOY_ADMIN_PORT

pytestmark = pytest.mark.slow

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FIXED_PORTS = (
    [port for _, _, port in ECHO_BACKENDS]
    + [p for pair in EDGES for p in pair]
    + [ENVOY_ADMIN_PORT, CONSOLE_PORT]
)


def busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def until(probe, timeout: float, what: str, proc: asyncio.subprocess.Process):  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: object = None
    while loop.time() < deadline:
        assert proc.returncode is None, f"xdsbus up exited with {proc.returncode} while waiting for {what}"
        try:
            value = await probe()
            if value:
                return value
        except (OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError, ValueError) as exc:
            last = exc
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}: {last}")


async def test_up_runs_the_demo_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    taken = [port for port in FIXED_PORTS if busy(port)]
    if taken:
        pytest.skip(f"ports of the local stack in use (is `make run` running?): {taken}")
    config = tmp_path / "examples"
    shutil.copytree(EXAMPLES, config)
    gateway = free_port()
    log = tmp_path / "up.log"
    env = {**os.environ, "XDSBUS_NATS_PORT": str(free_port())}
    out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        proc = await asyncio.create_subprocess_exec(
            tool("xdsbus"),
            "up",
            "--config-dir",
            str(config),
            "--data-dir",
            str(tmp_path / "data"),
            "--gateway-http-port",
            str(gateway),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    finally:
        os.close(out)
    try:
        # The echo backends answer as the demo's pods.
        for service, pod, port in ECHO_BACKENDS:

            async def echo_up(port: int = port) -> dict[str, str]:
                return (await http.get("127.0.0.1", port, "/")).json()  # type: ignore[no-any-return]

            body = await until(echo_up, 20, f"echo backend {service}", proc)
            assert (body["pod"], body["service"], body["namespace"]) == (pod, service, "demo")
        assert (tmp_path / "data" / "envoy-bootstrap.yaml").exists()
        output = log.read_text()
        assert f"curl -H 'Host: demo.local' http://127.0.0.1:{gateway}/a" in output

        if not edge_installed():
            assert "the edge is missing" in output
        else:

            async def pod(path: str) -> str:
                response = await http.get("127.0.0.1", gateway, path, host_header="demo.local", timeout=5)
                return str(response.json()["pod"]) if response.status == 200 else ""

            async def serving(path: str, prefix: str) -> bool:
                return (await pod(path)).startswith(prefix)

            await until(lambda: serving("/a", "echo-a-"), 40, "demo.local/a through Envoy", proc)
            assert (await pod("/")).startswith("echo-b-")
            # examples/mcpbridge.yaml: a static registry, routed through higress.io/destination.
            await until(lambda: serving("/static", "echo-a-"), 10, "the static registry's route", proc)

            ingress = config / "ingress.yaml"
            ingress.write_text(ingress.read_text().replace("name: echo-a", "name: echo-b"))
            await until(lambda: serving("/a", "echo-b-"), 5, "the edited route", proc)

            # The console (docs/console.md) reads the ledger with the reader's credentials.
            async def console_scopes() -> object:
                response = await http.get("127.0.0.1", CONSOLE_PORT, "/api/scopes", timeout=5)
                return response.status == 200 and response.json()["scopes"]

            assert f"console: http://127.0.0.1:{CONSOLE_PORT}/" in log.read_text()
            scopes = await until(console_scopes, 10, "the console listing the ledger's scopes", proc)
            assert "default" in [s["scope"] for s in scopes]
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    assert code == 0, log.read_text()[-3000:]
    # Every service ran as its own NATS user (docs/design.md §10) and none needed more than its role grants.
    assert "Violation" not in log.read_text()
    # Every child is gone: nothing listens on the stack's ports any more.
    still = [port for port in [*FIXED_PORTS, gateway] if busy(port)]
    assert not still, f"still listening after Ctrl-C: {still}\n{log.read_text()[-3000:]}"
