"""The whole xdsbus stack for end-to-end tests: nats-server, the builder, N edges, watch-file on a directory
the test writes manifests into, echo backends (in the test's event loop) and a real Envoy connected to
every edge. Everything on free ports; `stop()` tears it down in reverse order.

    async with Stack(tmp_path, api_type="DELTA_GRPC") as stack:
        response = await stack.curl("/a")            # Host: demo.local through Envoy
        await stack.wait_for_pod("/a", "echo-a-")
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import re
import ssl
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import any_pb2

from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import Changes, Resource, ResourceKey, pack_any
from xdsbus.ledger import reader
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.ledger.store import fetch_body
from xdsbus_dev.echo import EchoIdentity, EchoServer
from xdsbus_dev.envoy_bootstrap import ApiType
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import XdsPki
from xdsbus_dev.harness.cluster import NatsCluster
from xdsbus_dev.harness.envoy import Envoy, terminate_process
from xdsbus_dev.harness.processes import NatsServer, Service, free_port, tool
from xdsbus_dev.nats_users import local_roles

NAMESPACE = "demo"
HOST = "demo.local"
CREATED = "2026-01-01T00:00:00Z"
# Small debounce so a test's changes become versions quickly.
BUILDER_FLAGS = ["--debounce-quiet", "0.02", "--debounce-max", "0.2"]


def edge_installed() -> bool:
    try:
        tool("xdsbus-edge")
    except FileNotFoundError:
        return False
    return True


# -- manifests ------------------------------------------------------------------------------------


def service_manifest(name: str, target_port: int, namespace: str = NAMESPACE) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": CREATED},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": target_port}]},
    }


def endpoint_slice_manifest(
    service: str, port: int, *, addresses: Sequence[str] = ("127.0.0.1",), suffix: str = "1",
    namespace: str = NAMESPACE,
) -> dict[str, Any]:  # fmt: skip
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": "http", "port": port}],
    }


def tls_secret_manifest(
    name: str, cert_pem: bytes, key_pem: bytes, namespace: str = NAMESPACE
) -> dict[str, Any]:
    """A kubernetes.io/tls Secret, base64 data as the API server returns it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": CREATED},
        "data": {
            "tls.crt": base64.b64encode(cert_pem).decode(),
            "tls.key": base64.b64encode(key_pem).decode(),
        },
    }


def ingress_manifest(
    name: str, host: str, paths: Sequence[tuple[str, str]], namespace: str = NAMESPACE, created: str = CREATED
) -> dict[str, Any]:
    """`paths`: (path prefix, service) pairs, port 80 of each service."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {
            "ingressClassName": "higress",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": svc, "port": {"number": 80}}},
                            }
                            for path, svc in paths
                        ]
                    },
                }
            ],
        },
    }


# -- edges ----------------------------------------------------------------------------------------

_METRIC = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _METRIC.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(3) or ""))
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        samples.append((match.group(1), labels, value))
    return samples


class Edge:
    """An `xdsbus-edge` subprocess: its xDS address, its HTTP port (ready, metrics) and its debug port. With
    `pki` it serves xDS over mTLS with those files; without, plaintext on loopback (--xds-plaintext)."""

    def __init__(
        self,
        name: str,
        nats_url: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        *,
        pki: XdsPki | None = None,
    ) -> None:
        self.name = name
        self.xds_port = free_port()
        self.http_port = free_port()
        self.debug_port = free_port()
        self.wasm_port = free_port()
        argv = [
            tool("xdsbus-edge"),
            "--xds-listen",
            f"127.0.0.1:{self.xds_port}",
            "--http-listen",
            f"127.0.0.1:{self.http_port}",
            "--debug-listen",
            f"127.0.0.1:{self.debug_port}",
            "--wasm-listen",
            f"127.0.0.1:{self.wasm_port}",
            "--wasm-cache-dir",
            str(log_dir / f"{name}-wasm"),
            "--nats-url",
            nats_url,
            *(pki.edge_flags() if pki is not None else ["--xds-plaintext", "true"]),
        ]
        self.service = Service(argv, log_dir / f"{name}.log", env=env)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    @property
    def running(self) -> bool:
        return self.service.proc is not None and self.service.proc.poll() is None

    def start(self) -> Edge:
        self.service.start()
        return self

    async def get(self, target: str) -> http.Response:
        return await http.get("127.0.0.1", self.http_port, target, timeout=10)

    async def ready(self) -> bool:
        try:
            return (await self.get("/ready")).status == 200
        except (OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError):
            return False

    async def metrics(self) -> list[tuple[str, dict[str, str], float]]:
        return parse_prometheus((await self.get("/metrics")).text)

    async def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of `name` whose labels include `labels`."""
        return sum(
            value
            for sample, have, value in await self.metrics()
            if sample == name and all(have.get(k) == v for k, v in labels.items())
        )

    async def debug(self, target: str) -> http.Response:
        """A /debug page, from the debug port."""
        return await http.get("127.0.0.1", self.debug_port, target, timeout=10)

    async def syncz(self) -> Any:
        return (await self.debug("/debug/syncz")).json()

    def kill9(self) -> None:
        self.service.kill9()

    async def stop(self) -> None:
        if self.service.proc is not None:
            await terminate_process(self.service.proc)


# -- the stack ------------------------------------------------------------------------------------


class StackError(AssertionError):
    pass


class Stack:
    """The stack; `start()` returns once Envoy is LIVE (and, with `ingress`, serving demo.local)."""

    def __init__(
        self,
        workdir: Path,
        *,
        edges: int = 2,
        api_type: ApiType = "GRPC",
        backends: Sequence[str] = ("echo-a", "echo-b"),
        ingress: bool = True,
        envoy: bool = True,
        nats_users: bool = False,
        nats: NatsCluster | None = None,
    ) -> None:
        self.workdir = workdir
        self.config_dir = workdir / "config"
        self.log_dir = workdir / "logs"
        self.api_type = api_type
        self.edge_count = edges
        self.backend_names = list(backends)
        self.with_ingress = ingress
        self.with_envoy = envoy
        self.gateway_port = free_port()
        self.https_port = free_port()
        # The default stack is the secure one: edges and Envoy speak mTLS with the harness's PKI.
        self.pki = XdsPki(workdir / "pki")
        # With nats_users, each service connects as its own role (docs/design.md §10).
        # A cluster passed in is shared: started before and stopped after the stack, by its owner.
        self.own_nats = nats is None
        self.nats: NatsServer | NatsCluster = nats or NatsServer(
            workdir / "nats", users=local_roles("e2e") if nats_users else None
        )
        self.builder: Service | None = None
        self.watch_file: Service | None = None
        self.edges: list[Edge] = []
        self.echoes: dict[str, EchoServer] = {}  # by pod name
        self.envoy: Envoy | None = None
        self._pods: dict[str, int] = {}
        self.stopped: set[str] = set()

    @property
    def listener(self) -> str:
        return f"0.0.0.0_{self.gateway_port}"

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> Stack:
        if not edge_installed():
            raise StackError("xdsbus-edge is not installed (pip install -e services/edge)")
        for path in (self.config_dir, self.log_dir):
            path.mkdir(parents=True, exist_ok=True)
        self.pki.create()
        if self.own_nats:
            self.nats.start()
            await http.wait_listening(self.nats.port)
        for name in self.backend_names:
            echo = await self.add_pod(name)
            self.write(
                f"{name}.yaml", [service_manifest(name, echo.port), endpoint_slice_manifest(name, echo.port)]
            )
        if self.with_ingress:
            self.write("ingress.yaml", [self.demo_ingress()])
        self.builder = Service(
            [
                tool("xdsbus-builder"),
                "--nats-url",
                self.nats.url,
                "--instance-id",
                "e2e",
                "--gateway-http-port",
                str(self.gateway_port),
                "--gateway-https-port",
                str(self.https_port),
                *BUILDER_FLAGS,
            ],
            self.log_dir / "builder.log",
            env=self.nats.client_env("builder"),
        ).start()
        self.watch_file = Service(
            [
                tool("xdsbus-watch-file"),
                "--dir",
                str(self.config_dir),
                "--source-name",
                "e2e",
                "--poll-interval",
                "0.05",
                "--nats-url",
                self.nats.url,
            ],
            self.log_dir / "watch-file.log",
            env=self.nats.client_env("watch-file"),
        ).start()
        for index in range(self.edge_count):
            edge = Edge(
                f"edge-{index}", self.nats.url, self.log_dir, env=self.nats.client_env("edge"), pki=self.pki
            )
            self.edges.append(edge.start())
        await self.wait(self._edges_ready, timeout=30, what="every edge /ready")
        if self.with_envoy:
            self.envoy = Envoy(
                self.workdir / "envoy",
                [edge.address for edge in self.edges],
                api_type=self.api_type,
                gateway_port=self.gateway_port,
                tls=self.pki.client(),
                wasm_modules=[("127.0.0.1", edge.wasm_port) for edge in self.edges],
            ).start()
            await self.envoy.wait_ready(timeout=30, listeners=[self.listener] if self.with_ingress else ())
        return self

    async def _edges_ready(self) -> bool:
        return all([await edge.ready() for edge in self.edges])

    async def stop(self) -> None:
        if self.envoy is not None:
            await self.envoy.stop()
        for edge in reversed(self.edges):
            await edge.stop()
        for echo in self.echoes.values():
            await echo.stop()
        for service in (self.watch_file, self.builder):
            if service is not None and service.proc is not None:
                await terminate_process(service.proc)
        if self.own_nats:
            self.nats.stop()

    async def __aenter__(self) -> Stack:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _check_alive(self) -> None:
        """Fail at once, with the logs, when a component died that the test did not stop."""
        for name, service in self._services():
            if name in self.stopped:
                continue
            if service.proc is not None and service.proc.poll() is not None:
                raise StackError(f"{name} exited with {service.proc.returncode}\n{self.logs()}")

    def kill_edge(self, edge: Edge) -> None:
        """SIGKILL an edge, as a crash would."""
        self.stopped.add(edge.name)
        edge.kill9()

    async def stop_builder(self) -> None:
        """Stop the builder (SIGTERM), e.g. to write the ledger by hand."""
        assert self.builder is not None and self.builder.proc is not None
        self.stopped.add("builder")
        await terminate_process(self.builder.proc)

    def _services(self) -> Iterable[tuple[str, Service]]:
        if self.builder:
            yield "builder", self.builder
        if self.watch_file:
            yield "watch-file", self.watch_file
        for edge in self.edges:
            yield edge.name, edge.service

    def logs(self, tail: int = 3000) -> str:
        """The end of every component's log, for failure messages."""
        parts = []
        for name, service in self._services():
            parts.append(f"--- {name} ---\n{service.output()[-tail:]}")
        if self.envoy is not None:
            parts.append(f"--- envoy ---\n{self.envoy.output(tail)}")
        return "\n".join(parts)

    async def wait(self, probe: Any, *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
        """Poll `probe` (async, returns truthy when done) until the deadline; fail with every log."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last: BaseException | None = None
        while True:
            self._check_alive()
            try:
                value = await probe()
                if value:
                    return value
            except (
                AssertionError,
                OSError,
                asyncio.IncompleteReadError,
                http.HttpError,
                TimeoutError,
            ) as exc:
                if isinstance(exc, StackError):
                    raise
                last = exc
            if loop.time() > deadline:
                raise StackError(
                    f"timed out after {timeout}s waiting for {what}: {last or ''}\n{self.logs()}"
                )
            await asyncio.sleep(interval)

    # -- backends and manifests --------------------------------------------------------------------

    async def add_pod(self, service: str) -> EchoServer:
        """Another echo backend for `service` (pod `<service>-7c9d5f-<n>`), on a free port."""
        n = self._pods.get(service, 0) + 1
        self._pods[service] = n
        pod = f"{service}-7c9d5f-{n}"
        echo = await EchoServer(EchoIdentity(pod=pod, namespace=NAMESPACE, service=service)).start()
        self.echoes[pod] = echo
        return echo

    def demo_ingress(self) -> dict[str, Any]:
        paths = [("/a", self.backend_names[0])]
        if len(self.backend_names) > 1:
            paths.append(("/", self.backend_names[1]))
        return ingress_manifest("demo", HOST, paths)

    def write(self, filename: str, objects: Sequence[dict[str, Any]]) -> Path:
        """Write manifests into the watched directory atomically (watch-file never sees half a file)."""
        path = self.config_dir / filename
        tmp = self.config_dir / f".{filename}.tmp"
        tmp.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
        os.replace(tmp, path)
        return path

    def remove(self, filename: str) -> None:
        (self.config_dir / filename).unlink()

    # -- traffic and state -------------------------------------------------------------------------

    async def curl(self, path: str, host: str = HOST, headers: dict[str, str] | None = None) -> http.Response:
        assert self.envoy is not None
        return await self.envoy.get(path, host=host, headers=headers)

    async def curl_tls(
        self,
        path: str,
        host: str,
        context: ssl.SSLContext,
        *,
        server_name: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> http.Response:
        """GET through Envoy's HTTPS listener with SNI `server_name` (default: `host`)."""
        return await http.request(
            "GET",
            "127.0.0.1",
            self.https_port,
            path,
            host_header=host,
            headers=headers,
            tls=context,
            server_name=server_name or host,
        )

    async def pod_for(self, path: str, host: str = HOST) -> str | None:
        """The pod that answered `path` through Envoy, or None when it did not answer 200."""
        response = await self.curl(path, host)
        if response.status != 200:
            return None
        return str(response.json().get("pod"))

    async def wait_for_pod(self, path: str, pod_prefix: str, host: str = HOST, timeout: float = 15.0) -> str:
        """Until a GET of `path` through Envoy is answered by a pod whose name starts with `pod_prefix`."""
        seen: list[str | None] = []

        async def probe() -> str | None:
            pod = await self.pod_for(path, host)
            seen.append(pod)
            return pod if pod is not None and pod.startswith(pod_prefix) else None

        try:
            return str(await self.wait(probe, timeout=timeout, what=f"{host}{path} served by {pod_prefix}*"))
        except StackError as exc:
            raise StackError(f"last answers: {seen[-5:]}\n{exc}") from None

    @contextlib.asynccontextmanager
    async def bus(self) -> AsyncIterator[Bus]:
        bus = await connect(BusSettings(url=self.nats.url, nats=self.nats.options()), name="e2e-test")
        try:
            yield bus
        finally:
            await bus.close()

    async def connected_edge(self) -> Edge:
        """The edge the Envoy streams its configuration from."""
        assert self.envoy is not None
        envoy = self.envoy

        async def probe() -> list[str]:
            return await envoy.connected_edges()

        addresses = await self.wait(probe, timeout=10, what="Envoy's ADS stream")
        assert len(addresses) == 1, addresses
        return next(edge for edge in self.edges if edge.address == addresses[0])


# -- the ledger, written by hand --------------------------------------------------------------------


async def publish_by_hand(
    bus: Bus, scope: str, changed: dict[ResourceKey, bytes], removed: Sequence[ResourceKey] = ()
) -> int:
    """Append a version to a scope's ledger after its head, as the builder would, with `changed` resources
    (serialized messages, packed into Any here) and `removed` keys: for resources the translator would
    never make. Stop the builder first (it fences the ledger). Returns the new version."""
    tip = await reader.tip(bus, scope)
    head = tip.head
    assert head is not None, f"the ledger of {scope!r} is empty"
    current = await reader.resource_set(bus, scope, head.record.version)
    changes: list[tuple[ResourceKey, Resource]] = []
    for key, message in sorted(changed.items()):
        body = pack_any(key.type_url, message)
        resource = Resource(hashlib.sha256(body).hexdigest(), body)
        changes.append((key, resource))
        current[key] = resource.sha256
    for key in removed:
        current.pop(key, None)
    digest = digests.digest_of(digests.CURRENT, ((k.type_url, k.name, sha) for k, sha in current.items()))
    publisher = LedgerPublisher(bus, scope, head.record.translator_version)
    publisher.adopt_head(tip.last_stream_seq, head.record.version)
    version = head.record.version + 1
    await publisher.publish(
        version=version,
        first_seq=version,
        changes=Changes(changed=changes, removed=list(removed)),
        digest=digest,
        resource_count=len(current),
        digest_algorithm=digests.CURRENT,
    )
    return version


async def resource_message(bus: Bus, scope: str, key: ResourceKey) -> bytes:
    """The serialized message (not the Any) of a resource at the ledger head."""
    head = await reader.head(bus, scope)
    assert head is not None
    current = await reader.resource_set(bus, scope, head.record.version)
    packed = any_pb2.Any()
    packed.ParseFromString(await fetch_body(bus, current[key]))
    return packed.value
