"""`chaos`: the whole stack on a three-node NATS JetStream cluster, under a steady stream of changes from
five sources, through one fault of the bus, of a service or of a source at a time (issue 14;
docs/operating-on-a-cluster.md).

The stack is the e2e one (builder and a standby, two edges, watch-file, a real Envoy) on `NatsCluster`,
with every stream, bucket and store at three replicas, plus the sources of bench/chaos_sources.py: the
Kubernetes API server fake with xdsbus-watch-k8s, and the Eureka (polled every second), Consul and
Nacos fakes with xdsbus-watch-eureka, -consul and -nacos, named by one McpBridge written through
watch-file. One `Load` per source changes a service's endpoint port, each change a new, ever growing
port: through watch-file, the EndpointSlice of one of `services` Services at `rate` per second; in the
API server fake, an EndpointSlice, and in each registry, an instance's registration, of one of
`source_services` services at `source_rate` per second each. `Watch` polls Envoy's admin API and times
when each change (or a later one of the same service, which includes it) is served.

For each fault: it is injected under load, held, repaired; then the loads pause and the stack must
catch up. Reported per fault (docs/design.md §8): `events_lost` (services whose final endpoint at Envoy
is not the last one written, and a ledger head whose digest differs from that of fresh full lists of the
five sources counts one more), `max_ms` and `p99_ms` (change written → Envoy serving it, over changes
of all sources written from the injection to the catch-up), `recover_s` (repair → Envoy serving every
change written until then), `stale_versions_accepted` (times Envoy went back to an older endpoint of a
service); for a restarted source, `first_change_ms` (its first change once back, visible at the source,
to Envoy serving it; the full run fails when it exceeds 2 s). Checked after each: no service exited,
CDS and LDS never empty at Envoy, the ledger is one chain.

`python -m bench.chaos` (what `make chaos` runs) writes bench/results/chaos.json; tests/chaos runs a short
version of the same scenarios."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import nats.errors

from bench.chaos_sources import (
    EUREKA_POLL,
    ConsulSource,
    EurekaSource,
    KubeSource,
    NacosSource,
    RegistrySource,
    fresh_digest,
    mcpbridge,
)
from bench.results_io import machine, results_dir
from tests.e2e.test_watcher_leases import list_directory
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.events import EVENTS_STREAM
from xdsbus.layout import DEFAULT_LEASE_TTL, LEASES_BUCKET, LEDGER_STREAM
from xdsbus.ledger import reader
from xdsbus.nats_options import MAX_PINGS_OUT_VARIABLE, PING_INTERVAL_VARIABLE
from xdsbus.secretbox import KEY_ENV as SECRET_KEY_VARIABLE
from xdsbus_dev.harness.cluster import NatsCluster, kv_stream
from xdsbus_dev.harness.processes import Service
from xdsbus_dev.harness.stack import Stack, endpoint_slice_manifest, service_manifest
from xdsbus_dev.harness.tcp_proxy import TcpProxy

T = TypeVar("T")
RESULT_NAME = "chaos"  # a standalone run (`make chaos`), not one of `python -m bench`
SCOPE = "default"
PARAMS = {
    "BENCH_CHAOS_RATE": ("50", "changes per second written by the load"),
    "BENCH_CHAOS_SERVICES": ("10", "Services the load rewrites, in turn"),
    "BENCH_CHAOS_SOURCE_RATE": ("4", "changes per second of each other source (API server, registries)"),
    "BENCH_CHAOS_SOURCE_SERVICES": ("4", "services each other source changes, in turn"),
    "BENCH_CHAOS_HOLD": ("20", "seconds a fault is held before it is repaired (quorum loss)"),
    "BENCH_CHAOS_LEASE_TTL": (str(DEFAULT_LEASE_TTL), "lease TTL of the layout, seconds"),
    "BENCH_CHAOS_PING_INTERVAL": ("10", "NATS ping interval of the half-open service, seconds"),
}
FIRST_PORT = 20000
EUREKA_FIRST_PORT = 40000
KUBE_FIRST_PORT = 50000
CONSUL_FIRST_PORT = 30000
NACOS_FIRST_PORT = 35000
# Issue 14: the first change after a source returns reaches Envoy within this (checked in the full run).
FIRST_CHANGE_BUDGET_MS = 2000.0


# -- the load ---------------------------------------------------------------------------------------


class Load:
    """Changes one of `names` after another at `rate` per second through `write(name, port)`, each with
    a new, ever growing port."""

    def __init__(
        self, source: str, names: list[str], write: Callable[[str, int], None], rate: float, first_port: int
    ) -> None:
        self.source = source
        self.names = names
        self._write = write
        self.rate = rate
        self.port: dict[str, int] = {}
        # (service, port, when written), in order.
        self.written: list[tuple[str, int, float]] = []
        self._next = first_port
        self._task: asyncio.Task[None] | None = None

    def write(self, name: str) -> None:
        self._next += 1
        port = self._next
        self._write(name, port)
        self.port[name] = port
        self.written.append((name, port, time.monotonic()))

    def seed(self) -> None:
        for name in self.names:
            self.write(name)

    async def _run(self) -> None:
        period = 1.0 / self.rate
        started = time.monotonic()
        n = 0
        while True:
            self.write(self.names[n % len(self.names)])
            n += 1
            await asyncio.sleep(max(0.0, started + n * period - time.monotonic()))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def pause(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def file_load(stack: Stack, services: int, rate: float) -> Load:
    """Through watch-file: the EndpointSlice of Service `load-<i>` (namespace demo) rewritten."""

    def write(name: str, port: int) -> None:
        stack.write(f"{name}.yaml", [service_manifest(name, 80), endpoint_slice_manifest(name, port)])

    return Load("file", [f"load-{i}" for i in range(services)], write, rate, FIRST_PORT)


# -- what Envoy serves ------------------------------------------------------------------------------


@dataclass
class Watch:
    """Polls Envoy's /clusters: the newest port of each load Service it serves and since when, whether
    CDS or LDS was ever empty, whether a Service ever went back to an older port."""

    stack: Stack
    names: list[str]
    served: dict[str, int] = field(default_factory=dict)
    # (service, port) -> first time Envoy served that port or a newer one of the service.
    seen_at: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    empty_cds: int = 0
    empty_lds: int = 0
    stale: int = 0
    polls: int = 0
    _task: asyncio.Task[None] | None = None
    # Stops the polling besides the cancel: Python 3.11's asyncio.wait_for (under each admin request)
    # swallows a cancellation that lands as the request completes, and the loop would poll on forever.
    _stopping: bool = False

    def _parse(self, text: str) -> dict[str, int]:
        ports: dict[str, int] = {}
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) < 3 or parts[2] != "cx_active":
                continue
            name = next((n for n in self.names if f"|{n}." in parts[0] or parts[0].endswith(n)), None)
            if name is None:
                continue
            port = int(parts[1].rsplit(":", 1)[1])
            ports[name] = max(port, ports.get(name, 0))
        return ports

    async def poll(self) -> None:
        envoy = self.stack.envoy
        assert envoy is not None
        now = time.monotonic()
        text = (await envoy.admin("/clusters")).text
        self.polls += 1
        if not any("::" in line and "outbound" in line for line in text.splitlines()):
            self.empty_cds += 1
        if self.polls % 4 == 0:
            listeners = (await envoy.admin("/listeners")).text
            if self.stack.listener not in listeners:
                self.empty_lds += 1
        for name, port in self._parse(text).items():
            before = self.served.get(name, 0)
            if port < before:
                self.stale += 1
            elif port > before:
                self.served[name] = port
                self.seen_at.setdefault(name, []).append((port, now))

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(OSError, TimeoutError, asyncio.IncompleteReadError):
                await self.poll()
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._stopping = False
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def served_at(self, name: str, port: int) -> float | None:
        """When Envoy first served `port` of `name`, or a newer one (which includes it)."""
        return next((when for have, when in self.seen_at.get(name, []) if have >= port), None)


# -- one fault ----------------------------------------------------------------------------------------


@dataclass
class FaultResult:
    """One fault's figures (docs/design.md §8) and its checks."""

    fault: str
    events_lost: int
    max_ms: float
    p99_ms: float
    recover_s: float
    stale_versions_accepted: int
    # p99 over the changes written after the repair (p99_ms: from the injection on).
    p99_after_ms: float = 0.0
    # A restarted source: its first change once back (visible at the source) to Envoy serving it.
    first_change_ms: float | None = None
    # p99_ms of each source's own changes: Eureka's include its poll interval, the others' do not.
    p99_by_source_ms: dict[str, float] = field(default_factory=dict)
    changes: int = 0
    cds_empty_polls: int = 0
    lds_empty_polls: int = 0
    exited: list[str] = field(default_factory=list)
    ledger_one_chain: bool = True
    digest_matches_fresh_list: bool = True
    error: str = ""

    @property
    def ok(self) -> bool:
        return (
            not self.error
            and not self.exited
            and self.events_lost == 0
            and self.stale_versions_accepted == 0
            and self.cds_empty_polls == 0
            and self.lds_empty_polls == 0
            and self.ledger_one_chain
            and self.digest_matches_fresh_list
        )


@dataclass
class Fault:
    """A fault: `inject` breaks something and returns `repair`, which mends it."""

    name: str
    inject: Callable[[ChaosRun], Awaitable[Callable[[], Awaitable[None]]]]
    hold: float = 3.0
    # The load whose source the fault restarts: its first change after the repair is timed.
    source: str = ""


async def retrying(make: Callable[[], Awaitable[T]], timeout: float = 30.0) -> T:
    """`make()`, again while NATS answers with a transient error (an election under way, a 503)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await make()
        except (nats.errors.Error, OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class ChaosRun:
    """A cluster and the stack on it, with its five sources and their loads; `run(fault)` measures one
    fault."""

    def __init__(
        self,
        workdir: Path,
        *,
        rate: float = 50.0,
        services: int = 10,
        source_rate: float = 4.0,
        source_services: int = 4,
        lease_ttl: float = DEFAULT_LEASE_TTL,
        ping_interval: float = 10.0,
    ) -> None:
        self.workdir = workdir
        self.cluster = NatsCluster(workdir / "nats", lease_ttl=lease_ttl)
        self.stack = Stack(workdir / "stack", edges=2, nats=self.cluster)
        self.kube = KubeSource(workdir / "kube")
        self.eureka = EurekaSource(workdir / "eureka")
        self.consul = ConsulSource(workdir / "consul")
        self.nacos = NacosSource(workdir / "nacos")
        self.rate = rate
        self.services = services
        self.source_rate = source_rate
        self.source_services = source_services
        # By source: "file" (watch-file), "k8s" (the API server fake), "eureka", "consul", "nacos".
        self.loads: dict[str, Load] = {}
        self.watch: Watch | None = None
        self.standby: Service | None = None
        self.ping_interval = ping_interval
        # watch-file reaches every node through one of these, so its link can be made half-open.
        self.proxies: list[TcpProxy] = []
        self.saved_env: dict[str, str | None] = {}

    def _set_env(self, key: str, value: str) -> None:
        self.saved_env.setdefault(key, os.environ.get(key))
        os.environ[key] = value

    async def __aenter__(self) -> ChaosRun:
        # Services read the layout they expect (replicas, lease TTL) from the environment; restored by
        # close, so what runs after in the same process expects its own layout again.
        for key, value in self.cluster.client_env().items():
            self._set_env(key, value)
        # The watchers need a key to seal Secrets with (none are listed here; any key does).
        if not os.environ.get(SECRET_KEY_VARIABLE):
            self._set_env(SECRET_KEY_VARIABLE, base64.b64encode(os.urandom(32)).decode())
        self.cluster.start()
        try:
            for registry in self.registries():
                await registry.start_fake()
            await self.stack.start()
            self.standby = self._start_standby()
            self._proxy_watch_file()
            await self.kube.start(self.cluster.url, {})
            count = range(self.source_services)
            self.loads = {
                "file": file_load(self.stack, self.services, self.rate),
                # Cluster outbound|80||REG-<i>.eureka (Eureka upper-cases application names).
                "eureka": Load(
                    "eureka",
                    [f"REG-{i}" for i in count],
                    self.eureka.write,
                    self.source_rate,
                    EUREKA_FIRST_PORT,
                ),
                # Cluster outbound|80||kube-<i>.default.svc.cluster.local.
                "k8s": Load(
                    "k8s", [f"kube-{i}" for i in count], self.kube.write, self.source_rate, KUBE_FIRST_PORT
                ),
                # Cluster outbound|80||consul-<i>.dc1.consul.
                "consul": Load(
                    "consul",
                    [f"consul-{i}" for i in count],
                    self.consul.write,
                    self.source_rate,
                    CONSUL_FIRST_PORT,
                ),
                # Cluster outbound|80||nacos-<i>.DEFAULT-GROUP.public.nacos.
                "nacos": Load(
                    "nacos",
                    [f"nacos-{i}" for i in count],
                    self.nacos.write,
                    self.source_rate,
                    NACOS_FIRST_PORT,
                ),
            }
            for load in self.loads.values():
                load.seed()
            # The registries hold their services before their watchers start: watch-nacos finds a new
            # service only when it lists them again (every 30 s).
            self.stack.write("mcpbridge.yaml", [mcpbridge([r.registry_entry() for r in self.registries()])])
            for registry in self.registries():
                registry.start_watcher(self.cluster.url, {})
            self.watch = Watch(self.stack, [name for load in self.loads.values() for name in load.names])
            self.watch.start()
            await self.stack.wait(self.kube.watching, timeout=30, what="watch-k8s listing and watching")
            await self.caught_up(timeout=60)
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        for load in self.loads.values():
            await load.pause()
        if self.watch is not None:
            await self.watch.stop()
        if self.standby is not None:
            self.standby.terminate()
        await self.kube.stop()
        for registry in self.registries():
            await registry.stop()
        await self.stack.stop()
        for proxy in self.proxies:
            proxy.stop()
        self.cluster.stop()
        for key, value in self.saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self.saved_env.clear()

    def registries(self) -> list[RegistrySource]:
        """The registry sources, in the McpBridge's order."""
        return [self.eureka, self.consul, self.nacos]

    def _start_standby(self) -> Service:
        """A second builder, standing by for the scope's lease (docs/design.md §5)."""
        builder = self.stack.builder
        assert builder is not None
        argv = list(builder.argv)
        argv[argv.index("--instance-id") + 1] = "standby"
        return Service(argv, self.stack.log_dir / "builder-standby.log", env=builder.env).start()

    def _proxy_watch_file(self) -> None:
        """Restart watch-file (same identity: it takes its lease back at once) through a TCP proxy per
        node, with pings every `ping_interval`."""
        watch_file = self.stack.watch_file
        assert watch_file is not None
        self.proxies = [TcpProxy(node.port).start() for node in self.cluster.nodes]
        watch_file.terminate()
        argv = watch_file.argv
        argv[argv.index("--nats-url") + 1] = ",".join(proxy.url for proxy in self.proxies)
        watch_file.env[PING_INTERVAL_VARIABLE] = str(self.ping_interval)
        watch_file.env[MAX_PINGS_OUT_VARIABLE] = "2"
        watch_file.start()

    async def connect(self) -> Bus:
        """The test's own connection, expecting the cluster's layout."""
        return await connect(BusSettings.from_env(self.cluster.url), name="chaos", attempts=20)

    def _all_services(self) -> list[tuple[str, Service]]:
        services = [*self.stack._services()]
        if self.standby is not None:
            services.append(("builder-standby", self.standby))
        watchers = [("watch-k8s", self.kube.service)]
        watchers += [(f"watch-{r.kind}", r.service) for r in self.registries()]
        for name, service in watchers:
            if service is not None:
                services.append((name, service))
        return services

    def exited(self) -> list[str]:
        """The services that exited although no fault stopped them."""
        return [
            name
            for name, service in self._all_services()
            if name not in self.stack.stopped and service.proc is not None and service.proc.poll() is not None
        ]

    def _log(self, name: str) -> str:
        return next((service.output() for have, service in self._all_services() if have == name), "")

    async def caught_up(self, timeout: float) -> None:
        """Until Envoy serves the last port written of every Service of every load."""
        watch = self.watch
        assert watch is not None

        async def probe() -> bool:
            return all(
                watch.served.get(name, 0) >= port
                for load in self.loads.values()
                for name, port in load.port.items()
            )

        await self.stack.wait(probe, timeout=timeout, what="Envoy serving every change written")

    async def _ledger_checks(self) -> tuple[bool, bool]:
        bus = await self.connect()
        try:
            return await self.ledger_is_one_chain(bus), await self.digest_matches(bus)
        finally:
            await bus.close()

    async def ledger_is_one_chain(self, bus: Bus) -> bool:
        previous = None
        async for entry in reader.entries(bus, SCOPE):
            version = entry.record.version
            if previous is not None and entry.record.parent != previous:
                return False
            previous = version
        return True

    async def digest_matches(self, bus: Bus) -> bool:
        """Whether the ledger head's digest is that of fresh full lists of the five sources (the
        directory, the API server fake, the registry fakes), folded and translated by the builder's
        code."""
        head = await reader.head(bus, SCOPE)
        assert head is not None
        lister = await list_directory(bus, self.stack.config_dir, "e2e")
        # The sources list themselves at once (each one's events in a fixed order for the fold).
        listed = await asyncio.gather(
            self.kube.fresh_events(bus), *(registry.fresh_events(bus) for registry in self.registries())
        )
        events = [*lister.captured, *(event for events in listed for event in events)]
        return bool(head.record.digest == fresh_digest(events, head.record.translator_version))

    async def run(
        self, fault: Fault, *, catch_up: float = 90.0, before: float = 1.0, after: float = 2.0
    ) -> FaultResult:
        """Loads on, inject, hold, repair, loads off, catch up; then measure and check."""
        watch = self.watch
        assert watch is not None
        loads = list(self.loads.values())
        stale, cds, lds = watch.stale, watch.empty_cds, watch.empty_lds
        first = {load.source: len(load.written) for load in loads}
        for load in loads:
            load.start()
        await asyncio.sleep(before)  # steady load before the fault
        repair = await fault.inject(self)
        await asyncio.sleep(fault.hold)
        await repair()
        repaired = time.monotonic()
        written_by_repair = {load.source: len(load.written) for load in loads}
        await asyncio.sleep(after)  # load after the repair too
        for load in loads:
            await load.pause()
        error = ""
        try:
            await self.caught_up(timeout=catch_up)
        except AssertionError as exc:
            error = str(exc)[:20000]
        done = time.monotonic()
        exited = self.exited()
        if exited and not error:
            error = "\n".join(f"{name} exited:\n{self._log(name)[-3000:]}" for name in exited)

        def served(name: str, port: int) -> float:
            return watch.served_at(name, port) or done

        latencies, after = [], []
        by_source: dict[str, float] = {}
        recovered = repaired
        for load in loads:
            own = []
            for name, port, when in load.written[first[load.source] :]:
                latency = (served(name, port) - when) * 1000
                own.append(latency)
                if when >= repaired:
                    after.append(latency)
            latencies.extend(own)
            by_source[load.source] = round(_percentile(own, 0.99), 1)
            for name, port, _ in load.written[first[load.source] : written_by_repair[load.source]]:
                recovered = max(recovered, served(name, port))
        first_change_ms = None
        returned = self.loads[fault.source].written[written_by_repair[fault.source] :] if fault.source else []
        if returned:
            # The first change the restarted source made once it was back, to Envoy serving it.
            name, port, when = returned[0]
            first_change_ms = round((served(name, port) - when) * 1000, 1)
        lost = sum(
            1 for load in loads for name, port in load.port.items() if watch.served.get(name, 0) != port
        )
        one_chain, matches = await retrying(self._ledger_checks)
        return FaultResult(
            fault=fault.name,
            events_lost=lost + (0 if matches else 1),
            max_ms=round(max(latencies, default=0.0), 1),
            p99_ms=round(_percentile(latencies, 0.99), 1),
            p99_after_ms=round(_percentile(after, 0.99), 1),
            recover_s=round(max(0.0, recovered - repaired), 2),
            stale_versions_accepted=watch.stale - stale,
            first_change_ms=first_change_ms,
            p99_by_source_ms=by_source,
            changes=sum(len(load.written) - first[load.source] for load in loads),
            cds_empty_polls=watch.empty_cds - cds,
            lds_empty_polls=watch.empty_lds - lds,
            exited=exited,
            ledger_one_chain=one_chain,
            digest_matches_fresh_list=matches,
            error=error,
        )


# -- the faults ---------------------------------------------------------------------------------------


def _kill_leader(stream: str) -> Callable[[ChaosRun], Awaitable[Callable[[], Awaitable[None]]]]:
    async def inject(run: ChaosRun) -> Callable[[], Awaitable[None]]:
        index = await run.cluster.leader_of(stream)
        run.cluster.kill9(index)

        async def repair() -> None:
            run.cluster.restart(index)

        return repair

    return inject


async def _kill_edge(run: ChaosRun) -> Callable[[], Awaitable[None]]:
    edge = await run.stack.connected_edge()
    run.stack.kill_edge(edge)

    async def repair() -> None:
        edge.start()
        run.stack.stopped.discard(edge.name)

    return repair


async def _lose_quorum(run: ChaosRun) -> Callable[[], Awaitable[None]]:
    # The ledger's leader and one more: two of three nodes down.
    leader = await run.cluster.leader_of(LEDGER_STREAM)
    other = next(node.index for node in run.cluster.nodes if node.index != leader)
    run.cluster.kill9(leader)
    run.cluster.kill9(other)

    async def repair() -> None:
        run.cluster.restart(leader)
        run.cluster.restart(other)

    return repair


async def _half_open_watch_file(run: ChaosRun) -> Callable[[], Awaitable[None]]:
    # Only the link in use goes silent: watch-file's pings must notice it and reconnect to another node.
    async def linked() -> TcpProxy | None:
        index = await run.cluster.node_of_client("watch-file")
        return run.proxies[index] if index is not None else None

    proxy: TcpProxy = await run.stack.wait(linked, timeout=30, what="watch-file connected to a node")
    proxy.stall()

    async def repair() -> None:
        proxy.resume()

    return repair


async def _pause_builder(run: ChaosRun) -> Callable[[], Awaitable[None]]:
    # The builder holding the scope's lease: after earlier faults it may be the standby.
    async def read_holder() -> bytes | None:
        bus = await run.connect()
        try:
            return (await bus.leases.get(f"builder.{SCOPE}")).value
        finally:
            await bus.close()

    holder = await retrying(read_holder)
    builder = run.standby if holder == b"standby" else run.stack.builder
    assert builder is not None and builder.proc is not None
    pid = builder.proc.pid
    os.kill(pid, signal.SIGSTOP)

    async def repair() -> None:
        os.kill(pid, signal.SIGCONT)

    return repair


async def _restart_kube_api(run: ChaosRun) -> Callable[[], Awaitable[None]]:
    # The load keeps writing meanwhile (into the fake's store, as into etcd); the server returns with
    # its history compacted, so watch-k8s's next watch gets 410 and must relist.
    await run.kube.go_down()
    return run.kube.come_back_compacted


def _restart_registry(
    source: Callable[[ChaosRun], RegistrySource],
) -> Callable[[ChaosRun], Awaitable[Callable[[], Awaitable[None]]]]:
    # The load keeps registering meanwhile: the restarted server holds what its instances registered.
    async def inject(run: ChaosRun) -> Callable[[], Awaitable[None]]:
        registry = source(run)
        await registry.go_down()
        return registry.come_back

    return inject


def faults(
    hold: float, quorum_hold: float, lease_ttl: float, ping_interval: float, source_hold: float | None = None
) -> list[Fault]:
    """One fault of each kind, in the order they run. The half-open link is held until pings (2 out)
    have noticed it; a source is down for `source_hold` (`hold` unless given)."""
    source_hold = hold if source_hold is None else source_hold
    return [
        Fault("kill_events_leader", _kill_leader(EVENTS_STREAM), hold),
        Fault("kill_ledger_leader", _kill_leader(LEDGER_STREAM), hold),
        Fault("kill_leases_leader", _kill_leader(kv_stream(LEASES_BUCKET)), hold),
        Fault("kill_connected_edge", _kill_edge, hold),
        Fault("restart_kube_api_410", _restart_kube_api, source_hold, source="k8s"),
        Fault("restart_eureka", _restart_registry(lambda run: run.eureka), source_hold, source="eureka"),
        Fault("restart_consul", _restart_registry(lambda run: run.consul), source_hold, source="consul"),
        Fault("restart_nacos", _restart_registry(lambda run: run.nacos), source_hold, source="nacos"),
        Fault("half_open_watch_file", _half_open_watch_file, ping_interval * 3 + 2),
        Fault("pause_builder_past_lease", _pause_builder, lease_ttl * 2),
        Fault("lose_quorum", _lose_quorum, quorum_hold),
    ]


@dataclass(frozen=True)
class ChaosSettings:
    """How hard and how long: the load, the layout's lease TTL, the services' pings, the holds."""

    rate: float = 50.0
    services: int = 10
    source_rate: float = 4.0
    source_services: int = 4
    lease_ttl: float = DEFAULT_LEASE_TTL
    ping_interval: float = 10.0
    hold: float = 5.0
    quorum_hold: float = 20.0
    # How long a restarted source stays down; None: `hold`.
    source_hold: float | None = None
    # Seconds of load before each fault and after its repair (the short run in make test trims them).
    before: float = 1.0
    after: float = 2.0
    skip: frozenset[str] = frozenset()


async def run_faults(workdir: Path, settings: ChaosSettings) -> list[FaultResult]:
    """Every fault but `settings.skip`, one after the other, on one cluster and stack."""
    results = []
    selected = [
        fault
        for fault in faults(
            settings.hold,
            settings.quorum_hold,
            settings.lease_ttl,
            settings.ping_interval,
            settings.source_hold,
        )
        if fault.name not in settings.skip
    ]
    run = ChaosRun(
        workdir,
        rate=settings.rate,
        services=settings.services,
        source_rate=settings.source_rate,
        source_services=settings.source_services,
        lease_ttl=settings.lease_ttl,
        ping_interval=settings.ping_interval,
    )
    async with run:
        for fault in selected:
            print(f"-- {fault.name}", flush=True)
            began = time.monotonic()
            try:
                result = await run.run(fault, before=settings.before, after=settings.after)
            except AssertionError as exc:
                result = FaultResult(fault.name, -1, 0.0, 0.0, 0.0, 0, error=str(exc)[:20000])
            print(json.dumps(asdict(result)), flush=True)
            print(f"-- {fault.name} took {time.monotonic() - began:.1f} s", flush=True)
            results.append(result)
            if result.error:
                break  # the stack is in no state to measure the next fault
    return results


def _env(name: str) -> str:
    return os.environ.get(name, PARAMS[name][0])


def run() -> dict[str, Any]:
    """The full run: every fault at the full hold; the result in the form of docs/design.md §8."""
    settings = ChaosSettings(
        rate=float(_env("BENCH_CHAOS_RATE")),
        services=int(_env("BENCH_CHAOS_SERVICES")),
        source_rate=float(_env("BENCH_CHAOS_SOURCE_RATE")),
        source_services=int(_env("BENCH_CHAOS_SOURCE_SERVICES")),
        lease_ttl=float(_env("BENCH_CHAOS_LEASE_TTL")),
        ping_interval=float(_env("BENCH_CHAOS_PING_INTERVAL")),
        quorum_hold=float(_env("BENCH_CHAOS_HOLD")),
    )
    # Kept when a fault broke something: the services' and nodes' logs are the evidence.
    workdir = Path(tempfile.mkdtemp(prefix="xdsbus-chaos-"))
    results = asyncio.run(run_faults(workdir, settings))
    if all(r.ok for r in results):
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"a fault broke something; logs kept in {workdir}", file=sys.stderr)
    lost = sum(max(r.events_lost, 0) for r in results)
    # Issue 14's bound for a restarted source, checked on the measured figure (tests only report it).
    slow = [
        r.fault
        for r in results
        if r.first_change_ms is not None and r.first_change_ms > FIRST_CHANGE_BUDGET_MS
    ]
    return {
        "name": RESULT_NAME,
        "value": lost,
        "unit": "events",
        "baseline": 0,
        "ratio": 0.0,
        "budget": 0,
        "budget_on": "value",
        "pass": lost == 0 and all(r.ok for r in results) and not slow,
        "params": {
            "rate_per_s": settings.rate,
            "services": settings.services,
            "source_rate_per_s": settings.source_rate,
            "source_services": settings.source_services,
            "eureka_poll_s": EUREKA_POLL,
            "first_change_budget_ms": FIRST_CHANGE_BUDGET_MS,
            "first_change_over_budget": slow,
            "quorum_hold_s": settings.quorum_hold,
            "lease_ttl_s": settings.lease_ttl,
            "ping_interval_s": settings.ping_interval,
            "faults": [asdict(r) for r in results],
            "value_is": "events lost, all faults (final state at Envoy; ledger digest vs a fresh full list)",
            "machine": machine(),
        },
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main() -> int:
    """Run every fault and write the result; a fault that broke something is reported in it (`pass`
    false, exit status 1), not raised: the other faults' figures are still worth having."""
    result = run()
    path = results_dir() / f"{RESULT_NAME}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{RESULT_NAME}: {result['value']} events lost, pass: {result['pass']} -> {path}")
    return 0 if result["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
