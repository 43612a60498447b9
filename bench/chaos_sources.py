"""The chaos suite's sources besides watch-file (bench/chaos.py; docs/operating-on-a-cluster.md): the
Kubernetes API server fake with `xdsbus-watch-k8s`, and the Eureka fake with `xdsbus-watch-eureka` (named
by an McpBridge written through watch-file, polled every second). Each serves in the suite's event loop,
is driven by a load through `write(name, port)`, restarts as the faults need, and lists itself afresh for
the digest check: the events its watcher would publish for what the source holds now, made by the
watcher's own code.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import msgspec

from tests.e2e.test_watcher_leases import list_cluster
from tests.fakes.eureka_server import FakeEureka
from tests.fakes.kube_api import FakeKubeApi
from xdsbus.bus import Bus
from xdsbus.events import Event
from xdsbus.fold.state import FoldState, apply
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.registry.sink import EventSink, _Publisher
from xdsbus.registry.status import RegistryStatus
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import Service, tool
from xdsbus_dev.harness.stack import endpoint_slice_manifest, service_manifest
from xdsbus_watch_eureka import EurekaRegistry

KUBE_NAMESPACE = "default"
# Kinds whose watch is open once watch-k8s listed them (a feed watches only after its list went out).
_CORE_WATCHES = ("services", "endpointslices", "ingresses", "secrets")
EUREKA_POLL = 1.0  # seconds, as issue 14 asks of the tests
# Every registry service's cluster keeps this port (McpBridge vport) while its instance's port moves:
# the load changes endpoints, not cluster names.
EUREKA_VPORT = 80
INSTANCE_ID = "i-1"


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


# -- Eureka --------------------------------------------------------------------------------------------


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


class EurekaSource:
    """The Eureka fake with one application of one instance per name (the instance's port moves), and
    `xdsbus-watch-eureka` on the cluster, polling every `EUREKA_POLL` s."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.eureka = FakeEureka()
        self.service: Service | None = None

    def registry_entry(self) -> dict[str, Any]:
        """The McpBridge's registry entry naming the fake."""
        return {
            "type": "eureka",
            "name": "main",
            "domain": "127.0.0.1",
            "port": self.eureka.port,
            "vport": {"default": EUREKA_VPORT},
        }

    def mcpbridge(self) -> dict[str, Any]:
        """The McpBridge higress-system/default, which the watcher follows from the event log."""
        return {
            "apiVersion": "networking.higress.io/v1",
            "kind": "McpBridge",
            "metadata": {"name": "default", "namespace": "higress-system"},
            "spec": {"registries": [self.registry_entry()]},
        }

    async def start_fake(self) -> None:
        await self.eureka.start()

    def start_watcher(self, nats_url: str, env: dict[str, str]) -> None:
        argv = [
            tool("xdsbus-watch-eureka"),
            "--nats-url",
            nats_url,
            "--instance-id",
            "chaos",
            "--http-listen",
            "off",
        ]
        env = {**env, "XDSBUS_EUREKA_POLL_INTERVAL": f"{EUREKA_POLL:g}"}
        self.service = Service(argv, self.workdir / "watch-eureka.log", env=env).start()

    def write(self, name: str, port: int) -> None:
        """Application `name`'s instance re-registers with `port` (what a restarted instance does)."""
        self.eureka.register(name, INSTANCE_ID, "127.0.0.1", port)

    async def go_down(self) -> None:
        """The server stops; connections are refused. Its registry is kept, as a restarted server gets
        it back from its peers and its instances' re-registrations."""
        await self.eureka.go_down()

    async def come_back(self) -> None:
        await self.eureka.come_back()

    async def fresh_events(self, bus: Bus) -> list[Event]:
        """What watch-eureka would publish for a fresh full fetch of the fake: the watcher's registry
        client and sink, run until its first resync."""
        config = msgspec.convert(self.registry_entry(), RegistryConfig)
        sink = _ListingSink(bus, config)
        registry = EurekaRegistry(config, _NoCredentials(), poll_interval=3600.0)
        task = asyncio.create_task(registry.run(sink))
        try:
            deadline = asyncio.get_running_loop().time() + 10.0
            while sink.resyncs == 0:
                if task.done():
                    task.result()
                if asyncio.get_running_loop().time() > deadline:
                    raise AssertionError("no full fetch of the Eureka fake within 10 s")
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
        await self.eureka.stop()
