"""The chaos suite's sources besides watch-file (bench/chaos.py; docs/operating-on-a-cluster.md): the
Kubernetes API server fake with `xdsbus-watch-k8s`, and three registry fakes with their watchers, named
by one McpBridge written through watch-file: Eureka with `xdsbus-watch-eureka` (polled every second),
Consul with `xdsbus-watch-consul` (blocking queries) and Nacos with `xdsbus-watch-nacos` (gRPC push).
Each serves in the suite's event loop, is driven by a load through `write(name, port)`, restarts as the
faults need, and lists itself afresh for the digest check: the events its watcher would publish for
what the source holds now, made by the watcher's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec

from tests.e2e.test_watcher_leases import list_cluster
from tests.fakes.consul_server import FakeConsul
from tests.fakes.eureka_server import FakeEureka
from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.nacos_server import FakeNacos
from xdsbus.bus import Bus
from xdsbus.events import Event
from xdsbus.fold.state import FoldState, apply
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.registry.api import Registry
from xdsbus.registry.sink import EventSink, _Publisher
from xdsbus.registry.status import RegistryStatus
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import Service, tool
from xdsbus_dev.harness.stack import endpoint_slice_manifest, service_manifest
from xdsbus_watch_consul import ConsulRegistry
from xdsbus_watch_eureka import EurekaRegistry
from xdsbus_watch_nacos.registry import NacosRegistry

KUBE_NAMESPACE = "default"
# Kinds whose watch is open once watch-k8s listed them (a feed watches only after its list went out).
_CORE_WATCHES = ("services", "endpointslices", "ingresses", "secrets")
EUREKA_POLL = 1.0  # seconds, as issue 14 asks of the tests
# Every registry service's cluster keeps this port while its instance's port moves (the McpBridge's
# vport for Eureka and Nacos, a steady instance's port for Consul): the loads change endpoints, not
# cluster names.
REGISTRY_VPORT = 80
INSTANCE_ID = "i-1"
REGISTRY_ADDRESS = "127.0.0.1"


def fresh_digest(events: list[Event], translator_version: str) -> str:
    """The digest of what the builder makes of `events` (fresh full lists of every source), folded and
    translated by the builder's own code."""
    state = FoldState()
    for seq, event in enumerate(events, start=1):
        apply(state, seq, event)
    translator = Translator(TranslatorSettings.parse(translator_version))
    translator.full_build(state)
    return translator.table.digest()


# -- Kubernetes --------------------------------------------------------------------------------------


class KubeSource:
    """The API server fake with one Service and EndpointSlice per name (namespace `default`), and
    `xdsbus-watch-k8s` on the cluster."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.kube = FakeKubeApi()
        self.kubeconfig = workdir / "kubeconfig"
        self.service: Service | None = None
        self._known: set[str] = set()

    async def start(self, nats_url: str, env: dict[str, str]) -> None:
        """The fake, then the watcher (`watching` says when it has listed)."""
        await self.kube.start()
        self.kube.write_kubeconfig(self.kubeconfig)
        argv = [
            tool("xdsbus-watch-k8s"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--nats-url",
            nats_url,
            "--instance-id",
            "chaos",
            "--http-listen",
            "off",
        ]
        self.service = Service(argv, self.workdir / "watch-k8s.log", env=env).start()

    async def watching(self) -> bool:
        """Whether watch-k8s listed the core kinds and watches them."""
        return all(self.kube.open_watches(plural) > 0 for plural in _CORE_WATCHES)

    def write(self, name: str, port: int) -> None:
        """The EndpointSlice of `name` with `port` (its Service first, the first time)."""
        if name not in self._known:
            self.kube.apply(service_manifest(name, 80, namespace=KUBE_NAMESPACE))
            self._known.add(name)
        self.kube.apply(endpoint_slice_manifest(name, port, namespace=KUBE_NAMESPACE))

    async def go_down(self) -> None:
        """The API server stops: watches end, connections are refused; its store (etcd) is kept."""
        await self.kube.stop()

    async def come_back_compacted(self) -> None:
        """The API server returns with its history compacted: the watcher's next watch, from the
        resourceVersion it had, gets 410 Gone ("too old resource version") and must relist."""
        self.kube.compact()
        await self.kube.start()

    async def fresh_events(self, bus: Bus) -> list[Event]:
        """What watch-k8s would publish for a fresh full list of the fake."""
        return list((await list_cluster(bus, self.kube)).captured)

    async def stop(self) -> None:
        if self.service is not None and self.service.proc is not None:
            await terminate_process(self.service.proc)
        await self.kube.stop()


# -- registries -----------------------------------------------------------------------------------------


def mcpbridge(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The McpBridge higress-system/default naming the registries of `entries`, which each watcher
    follows from the event log (each takes the entries of its own type)."""
    return {
        "apiVersion": "networking.higress.io/v1",
        "kind": "McpBridge",
        "metadata": {"name": "default", "namespace": "higress-system"},
        "spec": {"registries": entries},
    }


class _NoCredentials:
    def get(self, secret_name: str, key: str) -> str | None:
        return None


class _CapturingPublisher(_Publisher):
    """The registry sink's publisher, keeping what it would publish (it never holds the lease)."""

    def __init__(self, bus: Bus, source: str) -> None:
        super().__init__(bus, source)
        self.captured: list[Event] = []

    async def _publish(self, event: Event) -> None:
        self.captured.append(event)


class _ListingSink(EventSink):
    """The watcher's EventSink, normalizing as it does, with its events kept instead of published."""

    def __init__(self, bus: Bus, config: RegistryConfig) -> None:
        super().__init__(bus, config, RegistryStatus(bus, config.key))
        self.publisher = _CapturingPublisher(bus, self.source)
        self._publisher = self.publisher


class RegistrySource:
    """A registry fake and its watcher (`xdsbus-watch-<kind>`) on the cluster, named by the McpBridge.
    Subclasses say how the fake is driven and which registry client lists it."""

    kind = ""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.service: Service | None = None

    def registry_entry(self) -> dict[str, Any]:
        """The McpBridge's registry entry naming the fake."""
        raise NotImplementedError

    def registry(self, config: RegistryConfig) -> Registry:
        """The watcher's registry client, for one full listing of the fake."""
        raise NotImplementedError

    def watcher_env(self) -> dict[str, str]:
        return {}

    async def start_fake(self) -> None:
        raise NotImplementedError

    async def stop_fake(self) -> None:
        raise NotImplementedError

    def write(self, name: str, port: int) -> None:
        """Service `name`'s moving instance is now on `port`."""
        raise NotImplementedError

    async def go_down(self) -> None:
        """The server stops; connections are refused. Its registry is kept, as a restarted server gets
        it back from its peers (or its data) and its instances' registrations."""
        raise NotImplementedError

    async def come_back(self) -> None:
        """The server serves again on the same port."""
        raise NotImplementedError

    def start_watcher(self, nats_url: str, env: dict[str, str]) -> None:
        argv = [
            tool(f"xdsbus-watch-{self.kind}"),
            "--nats-url",
            nats_url,
            "--instance-id",
            "chaos",
            "--http-listen",
            "off",
        ]
        env = {**env, **self.watcher_env()}
        self.service = Service(argv, self.workdir / f"watch-{self.kind}.log", env=env).start()

    async def fresh_events(self, bus: Bus) -> list[Event]:
        """What the watcher would publish for a fresh full listing of the fake: its registry client and
        sink, run until their first resync."""
        config = msgspec.convert(self.registry_entry(), RegistryConfig)
        sink = _ListingSink(bus, config)
        task = asyncio.create_task(self.registry(config).run(sink))
        try:
            deadline = asyncio.get_running_loop().time() + 10.0
            while sink.resyncs == 0:
                if task.done():
                    task.result()
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError(f"no full listing of the {self.kind} fake within 10 s")
                await asyncio.sleep(0.02)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await sink.status.close()  # its status is the watcher's to write, not the lister's
        return list(sink.publisher.captured)

    async def stop(self) -> None:
        if self.service is not None and self.service.proc is not None:
            await terminate_process(self.service.proc)
        await self.stop_fake()


class EurekaSource(RegistrySource):
    """The Eureka fake with one application of one instance per name (the instance's port moves), and
    `xdsbus-watch-eureka` on the cluster, polling every `EUREKA_POLL` s."""

    kind = "eureka"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.eureka = FakeEureka()

    def registry_entry(self) -> dict[str, Any]:
        return {
            "type": "eureka",
            "name": "main",
            "domain": REGISTRY_ADDRESS,
            "port": self.eureka.port,
            "vport": {"default": REGISTRY_VPORT},
        }

    def registry(self, config: RegistryConfig) -> Registry:
        return EurekaRegistry(config, _NoCredentials(), poll_interval=3600.0)

    def watcher_env(self) -> dict[str, str]:
        return {"XDSBUS_EUREKA_POLL_INTERVAL": f"{EUREKA_POLL:g}"}

    async def start_fake(self) -> None:
        await self.eureka.start()

    async def stop_fake(self) -> None:
        await self.eureka.stop()

    def write(self, name: str, port: int) -> None:
        """Application `name`'s instance re-registers with `port` (what a restarted instance does)."""
        self.eureka.register(name, INSTANCE_ID, REGISTRY_ADDRESS, port)

    async def go_down(self) -> None:
        await self.eureka.go_down()

    async def come_back(self) -> None:
        await self.eureka.come_back()


class ConsulSource(RegistrySource):
    """The Consul fake with two instances per service: a steady one on `REGISTRY_VPORT`, which the
    health answer lists first (same node, lower ID), so that Consul, which has no vport, gives the
    service its port; and one whose port moves. `xdsbus-watch-consul` follows it with blocking
    queries."""

    kind = "consul"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.consul = FakeConsul(consul_service=False)
        self._known: set[str] = set()

    def registry_entry(self) -> dict[str, Any]:
        return {
            "type": "consul",
            "name": "main",
            "domain": REGISTRY_ADDRESS,
            "port": self.consul.port,
            "consulDatacenter": "dc1",
        }

    def registry(self, config: RegistryConfig) -> Registry:
        return ConsulRegistry(config, _NoCredentials())

    async def start_fake(self) -> None:
        await self.consul.start()

    async def stop_fake(self) -> None:
        await self.consul.stop()

    def write(self, name: str, port: int) -> None:
        """Instance `<name>-b` re-registers with `port` (the steady `<name>-a` first, the first time)."""
        if name not in self._known:
            self.consul.register(name, f"{name}-a", REGISTRY_ADDRESS, REGISTRY_VPORT)
            self._known.add(name)
        self.consul.register(name, f"{name}-b", REGISTRY_ADDRESS, port)

    async def go_down(self) -> None:
        await self.consul.go_down()

    async def come_back(self) -> None:
        await self.consul.come_back()


class NacosSource(RegistrySource):
    """The Nacos fake with one instance per service (group DEFAULT_GROUP, namespace public) whose port
    moves, and `xdsbus-watch-nacos` subscribed to it over gRPC."""

    kind = "nacos"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir)
        self.nacos = FakeNacos()
        self._port: dict[str, int] = {}

    def registry_entry(self) -> dict[str, Any]:
        return {
            "type": "nacos2",
            "name": "main",
            "domain": REGISTRY_ADDRESS,
            "port": self.nacos.http_port,
            "nacosNamespaceId": "public",
            "nacosGroups": ["DEFAULT_GROUP"],
            "vport": {"default": REGISTRY_VPORT},
        }

    def registry(self, config: RegistryConfig) -> Registry:
        return NacosRegistry(config, _NoCredentials())

    async def start_fake(self) -> None:
        await self.nacos.start()

    async def stop_fake(self) -> None:
        await self.nacos.stop()

    def write(self, name: str, port: int) -> None:
        """Service `name`'s instance moves to `port`: Nacos keys instances by address and port, so the
        new one registers before the old one leaves (a service left empty would be deleted)."""
        self.nacos.register(name, REGISTRY_ADDRESS, port)
        old = self._port.get(name)
        if old is not None:
            self.nacos.deregister(name, REGISTRY_ADDRESS, old)
        self._port[name] = port

    async def go_down(self) -> None:
        await self.nacos.go_down()

    async def come_back(self) -> None:
        await self.nacos.come_back()
