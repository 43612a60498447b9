"""The whole stack with the Kubernetes source: `Stack` (nats-server, the builder, edges, echo backends and a
real Envoy) fed by `xdsbus-watch-k8s` from a `FakeKubeApi` served in the test's own event loop.

    async with KubeStack(tmp_path) as stack:
        web = ingress_manifest("web", "web.local", [("/", "echo-a")])
        stack.apply(web)
        await stack.wait_for_pod("/", "echo-a-", host="web.local")
        await stack.restart_watcher(lambda: stack.delete(web))   # changed while the watcher is down

Design: `KubeStack` subclasses `Stack` and redirects Stack's manifest files into the fake API server.
`Stack.write(filename, objects)` is the one place Stack puts configuration (the backends' Services and
EndpointSlices at start, the demo Ingress, the tests' own manifests); here it applies `objects` to the
fake as `kubectl apply -f filename` would, and `remove(filename)` deletes them as `kubectl delete -f`.
Everything Stack does (ports, echo pods, builder flags, Envoy, `curl`, `wait_for_pod`, logs on failure)
is reused unchanged, and every object reaches the builder through the Kubernetes source `k8s/default`.
Stack still starts watch-file; its directory stays empty, so it is an idle second source that contributes
no objects (starting Stack's pieces one by one instead would copy `Stack.start`).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from tests.fakes.kube_api import FakeKubeApi, StatusWrite
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import ROUTE
from xdsbus.ledger import reader
from xdsbus.ledger.store import fetch_body
from xdsbus.translate.envoy_routes import http_route_config_name
from xdsbus_dev.envoy_bootstrap import ApiType
from xdsbus_dev.harness import http
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import Service, tool
from xdsbus_dev.harness.stack import NAMESPACE, Stack, StackError

GATEWAY_ADDRESS = "10.0.0.7"
INGRESS_API = "networking.k8s.io/v1"
SCOPE = "default"
# Seconds each watch request lasts: short, so every test also exercises watch renewal from the last RV.
RESYNC_TIMEOUT = 5
# Kinds whose watch must be open before the watcher counts as started: a feed opens its watch only after
# its list went to the builder, so open watches mean the first resync of these kinds is published.
_CORE_WATCHES = ("services", "endpointslices", "ingresses", "secrets")

ObjectKey = tuple[str, str, str, str]  # apiVersion, kind, namespace, name


def object_key(obj: dict[str, Any]) -> ObjectKey:
    """How the fake identifies an object; the namespace defaults like the fake's (`default`)."""
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "default", meta["name"])


class KubeStack(Stack):
    """`Stack` with the Kubernetes source; `start()` returns once the watcher listed everything and, with
    `ingress`, demo.local is served through Envoy."""

    def __init__(
        self,
        workdir: Path,
        *,
        edges: int = 1,
        api_type: ApiType = "GRPC",
        backends: Sequence[str] = ("echo-a", "echo-b"),
        ingress: bool = True,
        gateway_address: str = GATEWAY_ADDRESS,
        resync_timeout: int = RESYNC_TIMEOUT,
        ingress_class: str | None = None,
    ) -> None:
        super().__init__(workdir, edges=edges, api_type=api_type, backends=backends, ingress=ingress)
        self.kube = FakeKubeApi()
        self.manifest_dir = workdir / "manifests"
        self.kubeconfig = workdir / "kubeconfig"
        self.gateway_address = gateway_address
        self.resync_timeout = resync_timeout
        self.ingress_class = ingress_class
        self.watch_k8s: Service | None = None
        self.watcher_starts = 0
        self._files: dict[str, list[ObjectKey]] = {}

    # -- life cycle --------------------------------------------------------------------------------

    async def start(self) -> KubeStack:
        # The fake first: Stack.start() registers the backends through write(), i.e. in the fake.
        await self.kube.start()
        self.kube.write_kubeconfig(self.kubeconfig)
        await super().start()
        await self.start_watcher()
        if self.with_ingress:
            await self.wait_for_pod("/a", "echo-a-", timeout=30)
        return self

    async def stop(self) -> None:
        # The watcher before nats-server (Stack.stop), so that it exits cleanly and hands its lease back.
        await self._terminate_watcher()
        await super().stop()
        await self.kube.stop()

    async def __aenter__(self) -> KubeStack:
        try:
            return await self.start()
        except BaseException:
            await self.stop()
            raise

    def watcher_argv(self) -> list[str]:
        argv = [
            tool("xdsbus-watch-k8s"),
            "--kubeconfig",
            str(self.kubeconfig),
            "--nats-url",
            self.nats.url,
            "--gateway-address",
            self.gateway_address,
            "--resync-timeout",
            str(self.resync_timeout),
            # A name per start, so that the log and the status lease show which process did what.
            "--instance-id",
            f"watch-k8s-{self.watcher_starts}",
        ]
        if self.ingress_class is not None:
            argv += ["--ingress-class", self.ingress_class]
        return argv

    async def start_watcher(self, timeout: float = 30.0) -> None:
        """Start `xdsbus-watch-k8s`; returns once it listed the core kinds and is watching them."""
        assert self.watch_k8s is None or self.watch_k8s.proc is None or self.watch_k8s.proc.poll() is not None
        self.watcher_starts += 1
        self.watch_k8s = Service(self.watcher_argv(), self.log_dir / "watch-k8s.log").start()
        self.stopped.discard("watch-k8s")

        async def watching() -> bool:
            return all(self.kube.open_watches(plural) > 0 for plural in _CORE_WATCHES)

        await self.wait(watching, timeout=timeout, what="watch-k8s listing and watching")

    async def stop_watcher(self) -> None:
        """Stop `xdsbus-watch-k8s` with SIGTERM; it must exit cleanly and its watches must close."""
        code = await self._terminate_watcher()
        if code != 0:
            raise StackError(f"watch-k8s exited with {code} on SIGTERM\n{self.logs()}")

        async def closed() -> bool:
            return self.kube.open_watches() == 0

        await self.wait(closed, timeout=10, what="the watcher's watches to close")

    async def restart_watcher(self, meanwhile: Callable[[], object] | None = None) -> None:
        """Stop the watcher, call `meanwhile` (e.g. change the fake while nobody watches), start it again."""
        await self.stop_watcher()
        if meanwhile is not None:
            meanwhile()
        await self.start_watcher()

    async def _terminate_watcher(self) -> int | None:
        if self.watch_k8s is None or self.watch_k8s.proc is None:
            return None
        self.stopped.add("watch-k8s")
        return await terminate_process(self.watch_k8s.proc)

    @property
    def watcher_running(self) -> bool:
        return (
            self.watch_k8s is not None
            and self.watch_k8s.proc is not None
            and self.watch_k8s.proc.poll() is None
        )

    def _services(self) -> Iterable[tuple[str, Service]]:
        yield from super()._services()
        if self.watch_k8s is not None:
            yield "watch-k8s", self.watch_k8s

    # -- objects in the fake API server ------------------------------------------------------------

    def apply(self, *objects: dict[str, Any]) -> list[dict[str, Any]]:
        """Create or replace objects in the fake (as given; an update keeps the stored status)."""
        return [self.kube.apply(obj) for obj in objects]

    def delete(self, *objects: dict[str, Any] | ObjectKey) -> None:
        """Delete objects (manifests or `object_key`s) from the fake."""
        for obj in objects:
            api_version, kind, namespace, name = obj if isinstance(obj, tuple) else object_key(obj)
            self.kube.delete(api_version, kind, namespace, name)

    def write(self, filename: str, objects: Sequence[dict[str, Any]]) -> Path:
        """Stack's manifest files, applied to the fake like `kubectl apply -f`: objects of an earlier write
        of the same file that are not in this one are deleted. The manifests are also written, outside any
        watched directory, for the record; that path is returned."""
        keys = [object_key(obj) for obj in objects]
        self.apply(*objects)
        for key in self._files.get(filename, []):
            if key not in keys:
                self.delete(key)
        self._files[filename] = keys
        self.manifest_dir.mkdir(parents=True, exist_ok=True)
        path = self.manifest_dir / filename
        tmp = self.manifest_dir / f".{filename}.tmp"
        tmp.write_text(yaml.safe_dump_all(list(objects), sort_keys=False))
        os.replace(tmp, path)
        return path

    def remove(self, filename: str) -> None:
        """`kubectl delete -f`: delete what the last write of `filename` applied."""
        self.delete(*self._files.pop(filename))
        (self.manifest_dir / filename).unlink()

    def ingress(self, name: str, namespace: str = NAMESPACE) -> dict[str, Any] | None:
        """The Ingress as stored in the fake (with its status), or None."""
        return self.kube.get(INGRESS_API, "Ingress", namespace, name)

    def load_balancer(self, name: str, namespace: str = NAMESPACE) -> Any:
        """`status.loadBalancer.ingress` of an Ingress in the fake (None when unset or absent)."""
        status = (self.ingress(name, namespace) or {}).get("status") or {}
        return (status.get("loadBalancer") or {}).get("ingress")

    def status_writes(self, name: str, namespace: str = NAMESPACE) -> list[StatusWrite]:
        """The watcher's writes to the status of one Ingress, as the fake recorded them."""
        return [
            w
            for w in self.kube.status_writes
            if w.kind == "Ingress" and w.namespace == namespace and w.name == name
        ]

    # -- served state ------------------------------------------------------------------------------

    async def served(self, host: str, path: str = "/") -> str | int:
        """Who answers `host``path` through Envoy: the echo pod's name on a 200, else the status code."""
        response = await self.curl(path, host=host)
        if response.status == 200:
            return str(response.json().get("pod"))
        return response.status

    async def wait_served(self, host: str, path: str, want: str | int, timeout: float = 20.0) -> None:
        """Until `served(host, path)` is `want`: a pod name prefix (str) or a status code (int)."""
        seen: list[str | int] = []

        async def probe() -> bool:
            got = await self.served(host, path)
            seen.append(got)
            return got == want if isinstance(want, int) else isinstance(got, str) and got.startswith(want)

        try:
            await self.wait(probe, timeout=timeout, what=f"{host}{path} answered by {want}")
        except StackError as exc:
            raise StackError(f"last answers: {seen[-5:]}\n{exc}") from None

    async def route_config(self) -> tuple[int, route_pb2.RouteConfiguration]:
        """The ledger head's version and its HTTP route configuration, the one the gateway listener serves
        (what the builder published, whatever Envoy holds); a split table (docs/route-table-split.md) as
        the one table it stands for, its virtual hosts by host."""
        one_table = http_route_config_name(self.gateway_port)
        async with self.bus() as bus:
            head = await reader.head(bus, SCOPE)
            assert head is not None, "the ledger is empty"
            resources = await reader.resource_set(bus, SCOPE, head.record.version)
            names = [
                k.name
                for k in resources
                if k.type_url == ROUTE and (k.name == one_table or k.name.startswith(one_table + "."))
            ]
            assert names, "no HTTP route configuration at the ledger head"
            vhosts: dict[str, route_pb2.VirtualHost] = {}
            for name in sorted(names):
                packed = any_pb2.Any()
                packed.ParseFromString(await fetch_body(bus, resources[ResourceKey(ROUTE, name)]))
                table = route_pb2.RouteConfiguration()
                table.ParseFromString(packed.value)
                vhosts.update((v.name, v) for v in table.virtual_hosts)
        config = route_pb2.RouteConfiguration(name=one_table)
        config.virtual_hosts.extend(vhosts[n] for n in sorted(vhosts))
        return head.record.version, config


async def poll_statuses(stack: KubeStack, host: str, path: str, stop: asyncio.Event) -> list[str | int]:
    """Answers of `host``path` through Envoy, one after the other until `stop`; connection errors are
    recorded as their exception name (a gap, like a non-200 answer)."""
    answers: list[str | int] = []
    while not stop.is_set():
        try:
            answers.append(await stack.served(host, path))
        except (OSError, TimeoutError, asyncio.IncompleteReadError, http.HttpError) as exc:
            answers.append(type(exc).__name__)
        # Yield between requests so the watcher, the fake and the test's own polling all get the loop.
        await asyncio.sleep(0.01)
    return answers
