"""Helpers of the registry machinery tests: an in-memory registry the test controls, sources publishing
McpBridge and Secrets like watch-k8s and watch-file do, and readers of what reached the event log."""

from __future__ import annotations

import asyncio
import base64
import collections
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from nats.js import api

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, Event, Op, decode, subject_for
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryEndpoint, RegistryService
from xdsbus.registry.api import Credentials, Registry, RegistrySink
from xdsbus.secretbox import SecretBox
from xdsbus.watcher import Watcher
from xdsbus_dev.harness.processes import eventually

KIND = "RegistryService"
SYSTEM = "higress-system"
BRIDGE_KEY = f"{SYSTEM}/default"


def service(name: str, *addresses: str, registry: str = "fake/one", port: int = 8080) -> RegistryService:
    registry_type, _, registry_name = registry.partition("/")
    return RegistryService(
        hostname=f"{name}.{registry_type}",
        registry_type=registry_type,
        registry=registry_name,
        service=name,
        port=port,
        endpoints=[RegistryEndpoint(address=a, port=port) for a in addresses or ("10.0.0.1",)],
    )


class World:
    """What the in-memory registries hold, keyed by `type/name`, and whether each is reachable.

    `factory` makes FakeRegistry instances; every call is recorded in `created`."""

    def __init__(self) -> None:
        self.services: dict[str, dict[str, RegistryService]] = collections.defaultdict(dict)
        self.down: set[str] = set()
        self.created: list[RegistryConfig] = []
        self.running: collections.Counter[str] = collections.Counter()
        self.credentials_seen: dict[str, str | None] = {}
        self._changes: dict[str, asyncio.Queue[tuple[str, Any]]] = collections.defaultdict(asyncio.Queue)

    def factory(self, config: RegistryConfig, credentials: Credentials) -> Registry:
        self.created.append(config)
        return FakeRegistry(config, credentials, self)

    def put(self, key: str, svc: RegistryService) -> None:
        """The registry has (or changed) a service: running clients hear of it."""
        self.services[key][svc.hostname] = svc
        self._changes[key].put_nowait(("upsert", svc))

    def remove(self, key: str, hostname: str, *, tell: bool = True) -> None:
        self.services[key].pop(hostname, None)
        if tell:
            self._changes[key].put_nowait(("delete", hostname))

    def fail(self, key: str) -> None:
        """The registry becomes unreachable: its running client fails, and so do retries."""
        self.down.add(key)
        self._changes[key].put_nowait(("fail", None))


class FakeRegistry(Registry):
    """A registry client over `World`: resync on connect, then relay changes until failing."""

    def __init__(self, config: RegistryConfig, credentials: Credentials, world: World) -> None:
        super().__init__(config, credentials)
        self.world = world

    async def run(self, sink: RegistrySink) -> None:
        key = self.config.key
        if key in self.world.down:
            raise ConnectionError(f"{self.config.domain}: connection refused")
        if self.config.auth_secret_name:
            self.world.credentials_seen[key] = self.credentials.get(
                self.config.auth_secret_name, "nacosUsername"
            )
        queue = self.world._changes[key]
        while not queue.empty():
            queue.get_nowait()  # what happened before this connection is in the resync
        await sink.resync(list(self.world.services[key].values()))
        self.world.running[key] += 1
        try:
            while True:
                op, arg = await queue.get()
                if op == "fail":
                    raise ConnectionError("connection reset")
                if op == "upsert":
                    await sink.upsert(arg)
                else:
                    await sink.delete(arg)
        finally:
            self.world.running[key] -= 1


class Source(Watcher):
    """A watch-k8s or watch-file style source the test dictates (Secrets sealed like theirs)."""

    def __init__(self, bus: Bus, source: str, secret_box: SecretBox | None = None) -> None:
        super().__init__(bus, source, secret_box=secret_box)

    async def watch(self) -> None:
        return None

    async def put(self, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        await self.upsert(obj["kind"], f"{meta.get('namespace', 'default')}/{meta['name']}", obj)


def mcpbridge(*registries: dict[str, Any], name: str = "default", namespace: str = SYSTEM) -> dict[str, Any]:
    return {
        "apiVersion": "networking.higress.io/v1",
        "kind": "McpBridge",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"registries": list(registries)},
    }


def registry(registry_type: str, name: str, **fields: Any) -> dict[str, Any]:
    return {"type": registry_type, "name": name, "domain": f"{name}.example.com", "port": 8848, **fields}


def secret(name: str, namespace: str = SYSTEM, **values: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()},
    }


# -- reading the log ------------------------------------------------------------------------------------


async def folded(bus: Bus) -> FoldState:
    """Every event folded, as the builder would."""
    state = FoldState()
    await fold_until(bus, state, await last_event_seq(bus))
    return state


async def hostnames(bus: Bus, source: str) -> set[str]:
    """The RegistryService keys a source holds in the folded log."""
    state = await folded(bus)
    return set(state.objects.get(KIND, {}).get(source, {}))


async def events_of(bus: Bus, source: str, kind: str = KIND) -> list[Event]:
    """Every stored event of one source and kind, in order."""
    subject = subject_for(source, kind)
    info = await bus.js.stream_info(EVENTS_STREAM, subjects_filter=subject)
    count = (info.state.subjects or {}).get(subject, 0)
    if not count:
        return []
    sub = await bus.js.subscribe(
        subject, stream=EVENTS_STREAM, ordered_consumer=True, deliver_policy=api.DeliverPolicy.ALL
    )
    try:
        return [decode((await sub.next_msg(timeout=5)).data) for _ in range(count)]
    finally:
        await sub.unsubscribe()


@dataclasses.dataclass
class Counts:
    sync_begin: int = 0
    upsert: int = 0
    delete: int = 0
    sync_end: int = 0


async def op_counts(bus: Bus, source: str) -> Counts:
    counts = Counts()
    for event in await events_of(bus, source):
        name = event.op.value if isinstance(event.op, Op) else str(event.op)
        setattr(counts, name, getattr(counts, name) + 1)
    return counts


async def until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Poll a synchronous condition until it holds (deadline `timeout`)."""

    async def probe() -> bool:
        return condition()

    await eventually(probe, timeout=timeout, what=what)


async def until_async(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 10.0) -> None:
    """Poll an asynchronous condition until it holds (deadline `timeout`)."""
    await eventually(condition, timeout=timeout, what=what)
