"""The whole stack with the registry watchers, for the registry end-to-end tests: `RegistryStack` is a
`Stack` (nats-server, builder, an edge, watch-file, a real Envoy) that also runs `xdsbus-watch-nacos`,
`-consul` and `-eureka` as processes, with their logs in failure messages and their deaths detected.

Nothing Kubernetes: an McpBridge manifest (`higress-system/default`) written into watch-file's directory
names the fake registries (tests/fakes), and Ingresses whose backend is the McpBridge resource route a
host to a registry hostname with `higress.io/destination`. Instances registered in a fake point at echo
backends, so traffic through Envoy tells which instance answered.

    async with RegistryStack(tmp_path) as stack:
        nacos = NacosDriver(fake_nacos)
        nacos.prepare("reg")                                      # listed when the watch starts
        pods = await start_pods(stack, "nacos-reg", 1)            # 127.0.0.1:<P>
        hostname = nacos.hostname("reg")                          # reg.DEFAULT-GROUP.public.nacos
        stack.write("ingress.yaml", [registry_ingress("reg", "reg.test", hostname, pods.port)])
        stack.write("mcpbridge.yaml", [mcpbridge([nacos.registry()])])
        stack.start_watcher("nacos")
        nacos.register("reg", pods[0])
        await stack.wait_served_by("reg.test", ["nacos-reg-1"])

Every instance of one service listens on the same port, on its own loopback address (127.0.0.1,
127.0.0.2, ...), as instances on different hosts do: a registry service's port is that of its "first"
instance (Higress), so instances on one address with different ports would move the cluster
`outbound|<port>||<hostname>` (and break the route naming it) as instances come and go.
"""

from __future__ import annotations

import asyncio
import collections
import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from tests.fakes.consul_server import FakeConsul
from tests.fakes.eureka_server import FakeEureka
from tests.fakes.nacos_server import FakeNacos
from xdsbus import status_store
from xdsbus.contract.status import ObjectStatus
from xdsbus.registry.status import STATUS_KIND
from xdsbus_dev.echo import EchoIdentity, EchoServer
from xdsbus_dev.harness import http
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import Service, tool
from xdsbus_dev.harness.stack import CREATED, NAMESPACE, Stack, StackError

SYSTEM_NAMESPACE = "higress-system"
MCP_BRIDGE_BACKEND = {"apiGroup": "networking.higress.io", "kind": "McpBridge", "name": "default"}
# Eureka has no push: the watcher polls its delta this often (the default is Eureka's 30 s).
EUREKA_POLL_INTERVAL = "0.1"
WATCHERS = ("nacos", "consul", "eureka")

# -- manifests ------------------------------------------------------------------------------------


def mcpbridge(registries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Higress' McpBridge `higress-system/default` with these `spec.registries`."""
    return {
        "apiVersion": "networking.higress.io/v1",
        "kind": "McpBridge",
        "metadata": {"name": "default", "namespace": SYSTEM_NAMESPACE, "creationTimestamp": CREATED},
        "spec": {"registries": [dict(r) for r in registries]},
    }


def registry_ingress(name: str, host: str, hostname: str, port: int) -> dict[str, Any]:
    """An Ingress sending every path of `host` to the registry service `hostname:port`: the backend is the
    McpBridge resource and the destination is named by `higress.io/destination`, as in Higress."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": CREATED,
            "annotations": {"higress.io/destination": f"{hostname}:{port}"},
        },
        "spec": {
            "ingressClassName": "higress",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {"path": "/", "pathType": "Prefix", "backend": {"resource": MCP_BRIDGE_BACKEND}}
                        ]
                    },
                }
            ],
        },
    }


# -- echo pods behind a registry service ----------------------------------------------------------


@dataclass
class Pods:
    """The echo backends of one registry service: one per loopback address, all on `port`."""

    name: str
    port: int
    pods: list[EchoServer]

    def __getitem__(self, index: int) -> EchoServer:
        return self.pods[index]

    def pod_names(self) -> list[str]:
        return [p.identity.pod for p in self.pods]


async def start_pods(stack: Stack, name: str, count: int, *, attempts: int = 20) -> Pods:
    """`count` echo backends `<name>-1..count` on 127.0.0.1..count, one port shared by all (a port free on
    127.0.0.1 may be taken on another address: then another port is tried). The Stack stops them."""
    for _ in range(attempts):
        started: list[EchoServer] = []
        try:
            port = 0
            for n in range(1, count + 1):
                identity = EchoIdentity(pod=f"{name}-{n}", namespace=NAMESPACE, service=name)
                echo = await EchoServer(identity, host=f"127.0.0.{n}", port=port).start()
                started.append(echo)
                port = echo.port
        except OSError:
            for echo in started:
                await echo.stop()
            continue
        for echo in started:
            stack.echoes[echo.identity.pod] = echo
        return Pods(name, port, started)
    raise StackError(f"no port free on 127.0.0.1..{count} for {name}")


# -- the fake registries, driven alike ------------------------------------------------------------


class RegistryDriver(Protocol):
    """One fake registry as the tests drive it: instances are echo pods (address and port)."""

    kind: str  # the watcher: nacos, consul or eureka
    source: str  # the event source and status name, `<type>/<name>`
    weighted: bool  # whether the registry carries instance weights

    def registry(self) -> dict[str, Any]:
        """Its McpBridge `spec.registries[]` entry."""

    def hostname(self, service: str) -> str:
        """The Higress hostname of a service of this registry."""

    def prepare(self, service: str) -> None:
        """Make `service` known to the registry, without usable instances, before the watcher lists it,
        so that its first instances arrive through the service's own watch (see each driver)."""

    def register(self, service: str, pod: EchoServer, weight: int = 1) -> None:
        """Register (or update) the instance of `service` at the pod's address and port."""

    def deregister(self, service: str, pod: EchoServer) -> None:
        """Remove that instance."""

    def add_garbage(self, service: str, pod: EchoServer) -> str:
        """Add a malformed instance to `service`; returns a fragment the reported problem contains."""

    async def go_down(self) -> None: ...

    async def come_back(self) -> None: ...


class NacosDriver:
    """FakeNacos, a registry `nacos2/<name>` over one group of namespace `public`."""

    kind = "nacos"
    weighted = True

    def __init__(self, fake: FakeNacos, name: str = "main", group: str = "DEFAULT_GROUP") -> None:
        self.fake = fake
        self.name = name
        self.group = group
        self.source = f"nacos2/{name}"

    def registry(self) -> dict[str, Any]:
        return {
            "type": "nacos2",
            "name": self.name,
            "domain": "127.0.0.1",
            "port": self.fake.http_port,
            "nacosNamespaceId": "public",
            "nacosGroups": [self.group],
        }

    def hostname(self, service: str) -> str:
        return f"{service}.{self.group.replace('_', '-')}.public.nacos"

    def prepare(self, service: str) -> None:
        """Create the service (no instances): a service created later is only found at the watcher's next
        relist (every 10 s at least), while instances of a listed service arrive by push at once."""
        self.fake.create_service(service, group=self.group)

    def register(self, service: str, pod: EchoServer, weight: int = 1) -> None:
        self.fake.register(service, pod.host, pod.port, group=self.group, weight=float(weight))

    def deregister(self, service: str, pod: EchoServer) -> None:
        self.fake.deregister(service, pod.host, pod.port, group=self.group)

    def add_garbage(self, service: str, pod: EchoServer) -> str:
        # Parses as the client's Instance (ip and port present), but is no address.
        bad = {"ip": "300.1.2.3", "port": pod.port, "weight": 1.0}
        self.fake.push_garbage(service, bad, group=self.group)
        return "invalid address '300.1.2.3'"

    def subscribers(self, service: str) -> int:
        return self.fake.subscribers(service, group=self.group)

    async def go_down(self) -> None:
        await self.fake.go_down()

    async def come_back(self) -> None:
        await self.fake.come_back()


class ConsulDriver:
    """FakeConsul, a registry `consul/<name>` of its datacenter, no tag filter."""

    kind = "consul"
    weighted = True

    def __init__(self, fake: FakeConsul, name: str = "main") -> None:
        self.fake = fake
        self.name = name
        self.source = f"consul/{name}"

    def registry(self) -> dict[str, Any]:
        return {
            "type": "consul",
            "name": self.name,
            "domain": "127.0.0.1",
            "port": self.fake.port,
            "consulDatacenter": self.fake.datacenter,
        }

    def hostname(self, service: str) -> str:
        return f"{service}.{self.fake.datacenter}.consul"

    @staticmethod
    def instance_id(service: str, pod: EchoServer) -> str:
        return f"{service}-{pod.host}"

    def prepare(self, service: str) -> None:
        """Put the service in the catalog with an instance whose check is critical (not published).

        The watcher rate-limits each blocking loop (a token bucket of 2, refilled once per 15 s): the
        catalog loop, shared by all services, runs dry after a service appears and disappears, and a new
        service would then be seen up to 15 s later. A service in the catalog from the start has its own
        health watch, whose first change arrives at once."""
        self.fake.register(service, f"{service}-placeholder", "127.0.0.250", 9, status="critical")

    def register(self, service: str, pod: EchoServer, weight: int = 1) -> None:
        self.fake.register(service, self.instance_id(service, pod), pod.host, pod.port, weight=weight)

    def deregister(self, service: str, pod: EchoServer) -> None:
        self.fake.deregister(self.instance_id(service, pod))

    def add_garbage(self, service: str, pod: EchoServer) -> str:
        # The health answer as it stands plus an entry whose port is not a number.
        entries = self.fake.health_body(service)
        bad = copy.deepcopy(entries[0])
        bad["Service"]["ID"] = f"{service}-garbage"
        bad["Service"]["Port"] = "eighty"
        self.fake.garbage(service, [*entries, bad])
        return f"instance {service}-garbage"

    async def go_down(self) -> None:
        await self.fake.go_down()

    async def come_back(self) -> None:
        await self.fake.come_back()


class EurekaDriver:
    """FakeEureka, a registry `eureka/<name>`; Eureka has no weights."""

    kind = "eureka"
    weighted = False

    def __init__(self, fake: FakeEureka, name: str = "main") -> None:
        self.fake = fake
        self.name = name
        self.source = f"eureka/{name}"

    def registry(self) -> dict[str, Any]:
        return {"type": "eureka", "name": self.name, "domain": "127.0.0.1", "port": self.fake.port}

    def hostname(self, service: str) -> str:
        return f"{service.upper()}.eureka"

    def prepare(self, service: str) -> None:
        """Nothing: every poll sees every application."""

    @staticmethod
    def instance_id(service: str, pod: EchoServer) -> str:
        return f"{service}-{pod.host}"

    def register(self, service: str, pod: EchoServer, weight: int = 1) -> None:
        self.fake.register(service, self.instance_id(service, pod), pod.host, pod.port)

    def deregister(self, service: str, pod: EchoServer) -> None:
        assert self.fake.cancel(service, self.instance_id(service, pod))

    def add_garbage(self, service: str, pod: EchoServer) -> str:
        self.fake.garbage(service, f"{service}-garbage", ipAddr="not-an-ip")
        return "ipAddr 'not-an-ip' is not an IP address"

    async def go_down(self) -> None:
        await self.fake.go_down()

    async def come_back(self) -> None:
        await self.fake.come_back()


def _who(response: http.Response) -> str:
    """The pod that answered, or `HTTP <status>` for an answer other than 200."""
    return str(response.json()["pod"]) if response.status == 200 else f"HTTP {response.status}"


# -- the stack ------------------------------------------------------------------------------------


class RegistryStack(Stack):
    """A Stack (one edge by default) plus the registry watcher processes, started by `start_watcher`."""

    def __init__(self, workdir: Path, **kwargs: Any) -> None:
        kwargs.setdefault("edges", 1)
        kwargs.setdefault("backends", ("echo-a",))
        super().__init__(workdir, **kwargs)
        self.watchers: dict[str, Service] = {}

    def start_watcher(self, kind: str) -> Service:
        """Start `xdsbus-watch-<kind>` against the stack's NATS (Eureka polled every 0.1 s)."""
        env = {"XDSBUS_EUREKA_POLL_INTERVAL": EUREKA_POLL_INTERVAL} if kind == "eureka" else {}
        service = Service(
            [tool(f"xdsbus-watch-{kind}"), "--nats-url", self.nats.url, "--instance-id", f"e2e-{kind}"],
            self.log_dir / f"watch-{kind}.log",
            env=env,
        ).start()
        self.watchers[kind] = service
        return service

    def _services(self) -> Iterable[tuple[str, Service]]:
        yield from super()._services()
        for kind, service in self.watchers.items():
            yield f"watch-{kind}", service

    async def stop(self) -> None:
        """The watchers first (SIGTERM), then the rest of the stack."""
        for service in self.watchers.values():
            if service.proc is not None:
                await terminate_process(service.proc)
        await super().stop()

    def watcher_log(self, kind: str) -> str:
        """Everything `xdsbus-watch-<kind>` logged so far."""
        return self.watchers[kind].output()

    # -- registry statuses -----------------------------------------------------------------------

    async def registry_status(self, source: str) -> ObjectStatus | None:
        """The entry `Registry/<type>/<name>` of KV xdsbus_status, or None. Read by its key: listing the
        keys can miss some while others are written (nats-io/nats.py#842)."""
        async with self.bus() as bus:
            return await status_store.read(bus, STATUS_KIND, source, source)

    async def wait_registry_status(
        self, source: str, *, state: str | None = None, warning: str | None = None, timeout: float = 20.0
    ) -> ObjectStatus:
        """Until the registry's status is in `state` (accepted, rejected) and, with `warning`, has a
        warning containing it."""

        async def probe() -> ObjectStatus | None:
            status = await self.registry_status(source)
            if status is None or (state is not None and status.state != state):
                return None
            if warning is not None and not any(warning in w for w in status.warnings):
                return None
            return status

        what = f"status of Registry/{source}: {state or 'any'}"
        if warning is not None:
            what += f", warning {warning!r}"
        result: ObjectStatus = await self.wait(probe, timeout=timeout, what=what)
        return result

    async def wait_registry_status_gone(self, source: str, timeout: float = 20.0) -> None:
        """Until the registry has no status entry (it left the McpBridge)."""

        async def probe() -> bool:
            return await self.registry_status(source) is None

        await self.wait(probe, timeout=timeout, what=f"no status for Registry/{source}")

    async def holds(self, probe: Callable[[], bool], duration: float, what: str) -> None:
        """`probe` must stay true for `duration` seconds (checked every 50 ms). An observation window,
        not a synchronisation: it fails as soon as the probe is false."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        while loop.time() < deadline:
            self._check_alive()
            if not probe():
                raise StackError(f"no longer true: {what}\n{self.logs()}")
            await asyncio.sleep(0.05)  # pacing the observation, not waiting for anything

    # -- traffic ---------------------------------------------------------------------------------

    async def sample(self, host: str, n: int) -> collections.Counter[str]:
        """Who answered each of `n` requests to `host` (one keep-alive connection): the pod's name, or
        `HTTP <status>` for an answer other than 200."""
        counts: collections.Counter[str] = collections.Counter()
        async with http.Connection("127.0.0.1", self.gateway_port) as conn:
            for _ in range(n):
                counts[_who(await conn.request("GET", "/", host=host))] += 1
        return counts

    async def wait_served_by(
        self, host: str, pods: Iterable[str], n: int = 20, timeout: float = 20.0
    ) -> None:
        """Until `n` requests to `host` are all answered 200, by exactly `pods` (each at least once)."""
        wanted = set(pods)
        seen: list[collections.Counter[str]] = []

        async def probe() -> bool:
            counts = await self.sample(host, n)
            seen.append(counts)
            return set(counts) == wanted

        try:
            await self.wait(probe, timeout=timeout, what=f"{host} served by exactly {sorted(wanted)}")
        except StackError as exc:
            raise StackError(f"last answers: {seen[-3:]}\n{exc}") from None

    async def wait_status_code(self, host: str, status: int, timeout: float = 20.0) -> None:
        """Until a request to `host` is answered with `status`."""
        last: list[int] = []

        async def probe() -> bool:
            response = await http.request("GET", "127.0.0.1", self.gateway_port, "/", host_header=host)
            last.append(response.status)
            return response.status == status

        try:
            await self.wait(probe, timeout=timeout, what=f"{host} answering {status}")
        except StackError as exc:
            raise StackError(f"last statuses: {last[-5:]}\n{exc}") from None

    async def keeps_serving(
        self, host: str, pods: Iterable[str], duration: float
    ) -> collections.Counter[str]:
        """For `duration` seconds, every request to `host` must be answered 200 by one of `pods`; who
        answered. An observation window, not a synchronisation: it fails at the first other answer."""
        allowed = set(pods)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration
        counts: collections.Counter[str] = collections.Counter()
        async with http.Connection("127.0.0.1", self.gateway_port) as conn:
            while loop.time() < deadline:
                self._check_alive()
                who = _who(await conn.request("GET", "/", host=host))
                if who not in allowed:
                    raise StackError(f"{host} answered by {who} (allowed: {sorted(allowed)}) after {counts}")
                counts[who] += 1
                await asyncio.sleep(0.02)  # pacing the observation, not waiting for anything
        return counts
