"""The whole local stack of `xdsbus up` as child processes, stopped together on Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import socket
import sys
from pathlib import Path

from xdsbus.nats_options import FILE_VARIABLES, USER_VARIABLE
from xdsbus.secretbox import create_key_file
from xdsbus_dev.envoy_bootstrap import ads_bootstrap, write_bootstrap
from xdsbus_dev.harness.certs import ENVOY_IDENTITY, XdsPki, write_private
from xdsbus_dev.local_nats import LocalNatsUsers
from xdsbus_dev.nats_users import local_roles

_BIN = Path(sys.executable).parent

# The demo: echo backends where examples/ points its EndpointSlices, two edges, one Envoy.
ECHO_BACKENDS = (
    ("echo-a", "echo-a-7c9d5f-x2k4p", 18081),
    ("echo-b", "echo-b-5b8f6d-q7m2n", 18082),
)
DEMO_NAMESPACE = "demo"
DEMO_HOST = "demo.local"
EDGES = ((18000, 15014), (18001, 15015))  # (xDS port, HTTP port)
DEBUG_PORT = 15016  # edge N's /debug pages: 127.0.0.1:(DEBUG_PORT + N)
WASM_PORT = 15018  # edge N's wasm module port, which Envoy's bootstrap names: 127.0.0.1:(WASM_PORT + N)
ENVOY_ADMIN_PORT = 19000
CONSOLE_PORT = 15040  # the web console (docs/console.md), as the read-only reader role


REGISTRY_WATCHERS = ("xdsbus-watch-nacos", "xdsbus-watch-consul", "xdsbus-watch-eureka")


def _find_tool(name: str) -> str | None:
    path = _BIN / name
    return str(path) if path.exists() else shutil.which(name)


def _tool(name: str) -> str:
    return _find_tool(name) or name


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


async def _wait_port(port: int, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not _port_open(port):
        if loop.time() > deadline:
            raise TimeoutError(f"nothing listens on port {port} after {timeout}s")
        await asyncio.sleep(0.05)


async def run_stack(args: argparse.Namespace) -> int:
    data = args.data_dir.resolve()
    data.mkdir(parents=True, exist_ok=True)
    key_file = data / "secret.key"
    create_key_file(key_file)  # mode 0600 from its first byte; an existing keyring is kept
    nats_port = int(os.environ.get("XDSBUS_NATS_PORT", "4222"))
    nats_url = f"nats://127.0.0.1:{nats_port}"
    env = {**os.environ, "XDSBUS_NATS_URL": nats_url, "XDSBUS_SECRET_KEY_FILE": str(key_file)}
    env.pop("XDSBUS_SECRET_KEY", None)
    # One NATS user per role (docs/design.md §10); credentials of the caller's shell do not leak in.
    for variable in (USER_VARIABLE, *FILE_VARIABLES):
        env.pop(variable, None)
    nats_users = LocalNatsUsers(data / "nats-users", local_roles(args.config_dir.resolve().name or "root"))
    nats_users.ensure()
    # xDS over mTLS (docs/design.md §10): a local CA, the edges' server certificate and Envoy's client
    # certificate, kept across runs; the access policy grants Envoy's identity every scope and Gateway.
    pki = XdsPki(data / "pki").ensure()
    xds_policy = data / "xds-access.yaml"
    if not xds_policy.exists():
        write_private(
            xds_policy,
            f"allow:\n  - identity: {ENVOY_IDENTITY}\n    scopes: ['*']\n    gateways: ['*']\n".encode(),
        )
    children: list[tuple[str, asyncio.subprocess.Process]] = []

    async def start(
        name: str,
        *argv: str,
        log: Path | None = None,
        user: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        child_env = {**env, **(nats_users.client_env(user) if user else {}), **(extra or {})}
        # Own session: Ctrl-C reaches `up` alone, which then stops the children in order.
        if log is None:
            proc = await asyncio.create_subprocess_exec(*argv, env=child_env, start_new_session=True)
        else:
            out = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=child_env, start_new_session=True, stdout=out, stderr=out
                )
            finally:
                os.close(out)
        children.append((name, proc))

    try:
        await start(
            "nats-server",
            _tool("nats-server"),
            "-c",
            str(nats_users.config_file),
            "-a",
            "127.0.0.1",
            "-p",
            str(nats_port),
            "-js",
            "-sd",
            str(data / "nats"),
            extra=nats_users.server_env(),
        )
        await _wait_port(nats_port)
        # What compose and deploy/ run as a one-shot job: every stream, bucket and store, before any
        # service (docs/design.md §9). A difference it must not change in place stops the stack here.
        layout = await asyncio.create_subprocess_exec(
            _tool("xdsbus"),
            "layout",
            "--apply",
            "--nats-url",
            nats_url,
            env={**env, **nats_users.client_env("layout")},
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await layout.wait() != 0:
            print("xdsbus up: `xdsbus layout --apply` failed (above); stopping", file=sys.stderr, flush=True)
            return 1
        await start(
            "builder",
            _tool("xdsbus-builder"),
            "--gateway-http-port",
            str(args.gateway_http_port),
            # Envoy listens on loopback here: what a Gateway's status.addresses should say.
            "--gateway-address",
            "127.0.0.1",
            "--instance-id",
            "local",
            user="builder",
        )
        await start(
            "watch-file",
            _tool("xdsbus-watch-file"),
            "--dir",
            str(args.config_dir.resolve()),
            user="watch-file",
        )
        # The registry watchers idle until an McpBridge manifest in the config directory lists a registry
        # of their type; the ones not installed are simply not started.
        for registry in REGISTRY_WATCHERS:
            if (path := _find_tool(registry)) is not None:
                name = registry.removeprefix("xdsbus-")
                await start(name, path, "--instance-id", "local", user=name)
        for service, pod, port in ECHO_BACKENDS:
            await start(
                service,
                sys.executable,
                "-m",
                "xdsbus_dev.echo",
                "--port",
                str(port),
                "--pod",
                pod,
                "--namespace",
                DEMO_NAMESPACE,
                "--service",
                service,
                "--log-level",
                "warning",
            )
        edge = _find_tool("xdsbus-edge")
        if edge is None:
            print(
                "xdsbus up: the edge is missing (xdsbus-edge is not installed: "
                "`pip install -e services/edge`); starting the rest. Envoy gets no configuration without it.",
                file=sys.stderr,
                flush=True,
            )
        else:
            for index, (xds_port, http_port) in enumerate(EDGES):
                await start(
                    f"edge-{index}",
                    edge,
                    "--xds-listen",
                    f"127.0.0.1:{xds_port}",
                    "--http-listen",
                    f"127.0.0.1:{http_port}",
                    "--debug-listen",
                    f"127.0.0.1:{DEBUG_PORT + index}",
                    "--wasm-listen",
                    f"127.0.0.1:{WASM_PORT + index}",
                    "--wasm-cache-dir",
                    str(data / "wasm-modules"),
                    *pki.edge_flags(),
                    "--xds-access-policy",
                    str(xds_policy),
                    user="edge",
                )
        console = _find_tool("xdsbus-console")
        if console is not None:
            await start("console", console, "--listen", f"127.0.0.1:{CONSOLE_PORT}", user="reader")
        bootstrap = write_bootstrap(
            data / "envoy-bootstrap.yaml",
            ads_bootstrap(
                edges=[("127.0.0.1", xds_port) for xds_port, _ in EDGES],
                admin_port=ENVOY_ADMIN_PORT,
                node_id="gateway-local",
                tls=pki.client(),
                wasm_modules=[("127.0.0.1", WASM_PORT + index) for index in range(len(EDGES))],
            ),
        )
        envoy_log = data / "envoy.log"
        await start(
            "envoy",
            _tool("envoy"),
            "-c",
            str(bootstrap),
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--concurrency",
            "2",
            log=envoy_log,
        )
        port = args.gateway_http_port
        edges_line = (
            ", ".join(f"127.0.0.1:{x} (http {h}, debug {DEBUG_PORT + i})" for i, (x, h) in enumerate(EDGES))
            if edge
            else "none"
        )
        reader = nats_users.password_file("reader")
        console_line = f"  console: http://127.0.0.1:{CONSOLE_PORT}/   (read-only)\n" if console else ""
        print(
            f"\nxdsbus is up: NATS at {nats_url}, watching {args.config_dir}.\n"
            f"  edges: {edges_line}; Envoy admin http://127.0.0.1:{ENVOY_ADMIN_PORT}, log {envoy_log}\n"
            f"  xDS over mTLS: CA and certificates in {pki.directory}, access policy {xds_policy}\n"
            f"{console_line}"
            f"  curl -H 'Host: {DEMO_HOST}' http://127.0.0.1:{port}/a     answered by echo-a\n"
            f"  curl -H 'Host: {DEMO_HOST}' http://127.0.0.1:{port}/      answered by echo-b\n"
            f"  export XDSBUS_NATS_URL={nats_url} XDSBUS_NATS_PASSWORD_FILE={reader}   (the reader's user)\n"
            f"  xdsbus ledger log     versions as you edit {args.config_dir}/\n"
            "  xdsbus status         what the builder accepted or rejected\n"
            f"  XDSBUS_NATS_PASSWORD_FILE={nats_users.password_file('operator')} xdsbus rollback V\n"
            "      serve version V's resources again until `xdsbus unpin` (docs/rollback.md)\n"
            "  xdsbus proxy-status   the Envoy's sync state per type, across both edges\n"
            "Press Ctrl-C to stop.\n",
            flush=True,
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        waiters = [asyncio.create_task(proc.wait()) for _, proc in children]
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *waiters], return_when=asyncio.FIRST_COMPLETED)
        for (name, proc), waiter in zip(children, waiters, strict=True):
            if waiter in done:
                print(f"{name} exited with status {proc.returncode}; stopping the stack", file=sys.stderr)
                if name == "envoy":
                    tail = envoy_log.read_text(errors="replace")[-2000:] if envoy_log.exists() else ""
                    print(f"--- {envoy_log} ---\n{tail}", file=sys.stderr)
        return 0 if stopper in done else 1
    finally:
        # Stop in reverse start order: Envoy, the edges, the echo backends, sources, the builder, NATS.
        for _, proc in reversed(children):
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), timeout=10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
