"""Fixtures for the Kubernetes source: the fake API server, in-process K8sWatchers on the real
nats-server, and builders of the objects the tests create."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from tests.fakes.kube_api import HIGRESS_CRDS, FakeKubeApi, ResourceDef
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.secretbox import SecretBox
from xdsbus_watch_k8s import K8sWatcher

SYSTEM = "higress-system"
# Short retry delays keep outages and CRD re-checks within a test's time.
RETRY_CAP = 0.5


@pytest.fixture
async def kube() -> AsyncIterator[FakeKubeApi]:
    async with FakeKubeApi() as api:
        yield api


@pytest.fixture
def events(bus: Bus) -> EventLog:
    return EventLog(bus)


@dataclasses.dataclass
class Running:
    watcher: K8sWatcher
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.watcher.stop.set()
        await asyncio.wait_for(self.task, timeout=10)

    def loop(self, kind: str) -> Any:
        """The (first) list+watch loop of a kind."""
        return next(loop for loop in self.watcher.loops if loop.feed.kind == kind)


StartWatcher = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_watcher(bus: Bus, kube: FakeKubeApi) -> AsyncIterator[StartWatcher]:
    """Start a K8sWatcher against the fake as an asyncio task; all are stopped at the end of the test."""
    running: list[Running] = []

    async def start(**kwargs: Any) -> Running:
        kwargs.setdefault("secret_box", SecretBox.from_env())
        kwargs.setdefault("retry_cap", RETRY_CAP)
        kwargs.setdefault("system_namespace", SYSTEM)
        watcher = K8sWatcher(bus, client.Configuration(host=kube.url), stop=asyncio.Event(), **kwargs)
        run = Running(watcher, asyncio.create_task(watcher.run()))
        running.append(run)
        return run

    yield start
    for run in running:
        if not run.task.done():
            await run.stop()


def install_higress_crds(kube: FakeKubeApi) -> None:
    for rdef in HIGRESS_CRDS:
        kube.install_crd(rdef)


def install(kube: FakeKubeApi, *rdefs: ResourceDef) -> None:
    for rdef in rdefs:
        kube.install_crd(rdef)


def meta(name: str, namespace: str | None = "default", **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, **extra}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def service(name: str, namespace: str = "default", port: int = 80, **extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(name, namespace, **extra),
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]},
    }


def ingress(
    name: str,
    namespace: str = "default",
    *,
    class_name: str | None = "higress",
    annotations: dict[str, str] | None = None,
    host: str = "example.com",
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "rules": [
            {
                "host": host,
                "http": {
                    "paths": [
                        {
                            "path": "/",
                            "pathType": "Prefix",
                            "backend": {"service": {"name": "web", "port": {"number": 80}}},
                        }
                    ]
                },
            }
        ]
    }
    if class_name is not None:
        spec["ingressClassName"] = class_name
    obj: dict[str, Any] = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": meta(name, namespace, **({"annotations": annotations} if annotations else {})),
        "spec": spec,
    }
    if status is not None:
        obj["status"] = status
    return obj


def ingress_class(
    name: str, *, default: bool = False, controller: str = "example.com/other"
) -> dict[str, Any]:
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": meta(name, None, **({"annotations": annotations} if annotations else {})),
        "spec": {"controller": controller},
    }


def secret(name: str, namespace: str = "default", *, type_: str = "Opaque", **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(name, namespace),
        "type": type_,
        "data": {k.replace("_", "."): v for k, v in data.items()},
    }


def config_map(name: str, namespace: str = SYSTEM, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, namespace), "data": data}


def custom(
    api_version: str, kind: str, name: str, namespace: str | None = SYSTEM, **spec: Any
) -> dict[str, Any]:
    return {"apiVersion": api_version, "kind": kind, "metadata": meta(name, namespace), "spec": spec}


def upserted_keys(log: EventLog, kind: str) -> set[str]:
    return {e.key for e in log.of(Op.UPSERT, kind)}


def last_sync_keys(log: EventLog, kind: str) -> list[str] | None:
    """The keys of the latest sync_end of a kind (single-part), or None before the first."""
    ends = log.of(Op.SYNC_END, kind)
    return list(ends[-1].body["keys"]) if ends else None


async def wait_synced(log: EventLog, *kinds: str, count: int = 1) -> None:
    """Wait until each kind has had `count` sync_ends."""
    await log.wait_for(
        lambda lg: all(len(lg.of(Op.SYNC_END, k)) >= count for k in kinds), f"sync_end #{count} of {kinds}"
    )
