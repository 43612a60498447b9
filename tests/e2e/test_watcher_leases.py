"""One publisher per source, fenced by terms (docs/design.md §4), with real processes: nats-server, the
builder, and watch-file or watch-k8s replicas as subprocesses.

Each test ends like issue 12's fault tests: within 5 s of the (re)started watcher taking its source lease,
the ledger head's digest equals the digest of a fresh full list of the source, folded and translated by
the builder's own code (`fresh_digest`).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_asyncio import client

from tests.fakes.kube_api import FakeKubeApi
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.contract import digest as digests
from xdsbus.events import EVENTS_STREAM, Event, decode
from xdsbus.fold.state import FoldState, apply
from xdsbus.ledger import reader
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, tool
from xdsbus_dev.harness.stack import (
    BUILDER_FLAGS,
    endpoint_slice_manifest,
    ingress_manifest,
    service_manifest,
)
from xdsbus_watch_file import FileWatcher
from xdsbus_watch_k8s import K8sWatcher

pytestmark = pytest.mark.slow

SCOPE = "default"
HOST = "demo.local"
# Within 5 s of taking the lease (issue 12's fault tests).
CONVERGED = 5.0


# -- the fresh full list ---------------------------------------------------------------------------


class _Capture:
    """Mixed into a watcher: what it would publish is kept instead (it never holds the lease)."""

    captured: list[Event]

    async def _publish(self, event: Event) -> None:
        self.captured.append(event)


class _FileLister(_Capture, FileWatcher):
    pass


class _K8sLister(_Capture, K8sWatcher):
    pass


def fresh_digest(lister: _Capture, translator_version: str) -> str:
    """The digest of what the builder makes of one fresh full list of a source, read by `lister`."""
    state = FoldState()
    for seq, event in enumerate(lister.captured, start=1):
        apply(state, seq, event)
    translator = Translator(TranslatorSettings.parse(translator_version))
    translator.full_build(state)
    return translator.table.digest()


async def list_directory(bus: Bus, directory: Path, source_name: str) -> _FileLister:
    lister = _FileLister(bus, directory, source_name=source_name, stop=asyncio.Event())
    lister.captured = []
    lister.stop.set()  # one resync, then return
    await lister.watch()
    return lister


async def list_cluster(bus: Bus, kube: FakeKubeApi) -> _K8sLister:
    lister = _K8sLister(
        bus, client.Configuration(host=kube.url), gateway_status=False, retry_cap=0.5, stop=asyncio.Event()
    )
    lister.captured = []
    task = asyncio.create_task(lister.watch())
    kinds = ("Service", "EndpointSlice", "Ingress", "IngressClass", "Secret", "ConfigMap")
    await eventually(
        lambda: _true(all(lister.publishers[k].synced.is_set() for k in kinds)), what="a fresh full list"
    )
    lister.stop.set()
    await asyncio.wait_for(task, 10)
    return lister


async def head_matches(bus: Bus, expected: Any) -> bool:
    """Whether the ledger head's digest equals `await expected(translator_version)`."""
    head = await reader.head(bus, SCOPE)
    if head is None:
        return False
    assert head.record.digest_algorithm == digests.CURRENT
    want = await expected(head.record.translator_version)
    return bool(head.record.digest == want)


async def converged(bus: Bus, expected: Any, what: str) -> None:
    """The ledger head equals the fresh list within CONVERGED seconds."""
    await eventually(lambda: head_matches(bus, expected), timeout=CONVERGED, what=what)


async def _true(value: bool) -> bool:
    return value


# -- processes -------------------------------------------------------------------------------------


class Cluster:
    """nats-server, a test bus (which creates the leases bucket with `lease_ttl`) and the builder."""

    def __init__(self, workdir: Path, lease_ttl: float) -> None:
        self.workdir = workdir
        self.lease_ttl = lease_ttl
        self.nats = NatsServer(workdir / "nats")
        self.logs = workdir / "logs"
        self.services: list[Service] = []

    async def start(self) -> Bus:
        """nats-server, the leases bucket with this TTL, the builder; returns the test's bus."""
        # The bucket's TTL comes from BusSettings or, once the layout is configured apart, its variable.
        os.environ["XDSBUS_LEASE_TTL"] = f"{self.lease_ttl}"
        self.nats.start()
        bus = await connect(BusSettings(url=self.nats.url, lease_ttl=self.lease_ttl), name="test")
        self.spawn(
            "builder",
            [
                tool("xdsbus-builder"),
                "--instance-id",
                "builder",
                "--lease-ttl",
                f"{self.lease_ttl}",
                *BUILDER_FLAGS,
            ],
        )
        return bus

    def env(self) -> dict[str, str]:
        return {"XDSBUS_LEASE_TTL": str(self.lease_ttl)}

    def spawn(self, name: str, argv: list[str]) -> Service:
        """Start a service; each process logs to its own file (a restart's log holds only its own lines)."""
        service = Service(
            [*argv, "--nats-url", self.nats.url, "--log-level", "info"],
            self.logs / f"{name}.{len(self.services)}.log",
            env=self.env(),
        ).start()
        self.services.append(service)
        return service

    def stop(self) -> None:
        os.environ.pop("XDSBUS_LEASE_TTL", None)
        for service in reversed(self.services):
            if service.proc is not None and service.proc.poll() is None:
                os.kill(service.proc.pid, signal.SIGCONT)  # a paused process cannot exit
            service.terminate()
        self.nats.stop()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    made = Cluster(tmp_path, lease_ttl=2.0)
    try:
        yield made
    finally:
        made.stop()


def watch_file(cluster: Cluster, name: str, directory: Path) -> Service:
    return cluster.spawn(
        name,
        [
            tool("xdsbus-watch-file"),
            "--dir",
            str(directory),
            "--source-name",
            "e2e",
            "--poll-interval",
            "0.05",
            "--instance-id",
            name,
        ],
    )


async def took_lease(service: Service, name: str, times: int = 1) -> None:
    """Wait until `service` logged taking its source lease `times` times."""

    async def probe() -> bool:
        return service.output().count("publishing as " + name) >= times

    await eventually(probe, timeout=20, what=f"{name} taking the source lease (#{times})")


async def event_terms(bus: Bus, after: int = 0) -> set[int]:
    """The terms of every event stored after stream sequence `after`."""
    info = await bus.js.stream_info(EVENTS_STREAM)
    terms = set()
    for seq in range(after + 1, info.state.last_seq + 1):
        msg = await bus.js.get_msg(EVENTS_STREAM, seq)
        terms.add(decode(msg.data or b"").term)
    return terms


def manifests(directory: Path, *services: str, ingress_to: str = "a") -> None:
    """Services (with one endpoint each) and an Ingress routing demo.local to `ingress_to`."""
    directory.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(services):
        docs = [service_manifest(name, 9000 + index), endpoint_slice_manifest(name, 9000 + index)]
        (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(docs))
    ingress = ingress_manifest("demo", HOST, [("/", ingress_to)])
    (directory / "ingress.yaml").write_text(yaml.safe_dump(ingress))


# -- the tests -------------------------------------------------------------------------------------


async def test_a_watcher_paused_past_its_lease_changes_nothing_when_it_resumes(
    cluster: Cluster, tmp_path: Path
) -> None:
    bus = await cluster.start()
    stale_view, live_view = tmp_path / "stale", tmp_path / "live"
    manifests(stale_view, "a", "b")
    manifests(live_view, "a", "b")
    first = watch_file(cluster, "first", stale_view)
    await took_lease(first, "first")
    await converged(bus, lambda tv: fresh(bus, stale_view, tv), "the first watcher's list")

    assert first.proc is not None
    os.kill(first.proc.pid, signal.SIGSTOP)
    # What only the live view has: x; what the stale view loses while paused: b.
    manifests(live_view, "a", "b", "x", ingress_to="x")
    (stale_view / "b.yaml").unlink()
    second = watch_file(cluster, "second", live_view)
    await took_lease(second, "second")  # after the paused one's lease expired
    await converged(bus, lambda tv: fresh(bus, live_view, tv), "the successor's resync")
    before = (await bus.js.stream_info(EVENTS_STREAM)).state.last_seq

    os.kill(first.proc.pid, signal.SIGCONT)
    # It notices the refused renewal and stands by; whatever it published meanwhile carries its old term.
    await eventually(lambda: _true("lost the lease" in first.output()), what="the paused one stepping down")
    second_term = max(await event_terms(bus))
    assert all(term < second_term for term in await event_terms(bus, before) - {second_term})
    # Another change through the live holder: once it is served, the builder has folded the paused
    # watcher's events too (they came before it), and they changed nothing.
    (live_view / "y.yaml").write_text((live_view / "a.yaml").read_text().replace("name: a", "name: y"))
    await converged(bus, lambda tv: fresh(bus, live_view, tv), "the live view, after the resume")
    assert (await bus.leases.get("watch.file.e2e")).value == b"second"


async def fresh(bus: Bus, directory: Path, translator_version: str) -> str:
    return fresh_digest(await list_directory(bus, directory, "e2e"), translator_version)


async def test_a_restart_with_the_same_identity_takes_the_lease_back_at_once(tmp_path: Path) -> None:
    # A long TTL: the restarted watcher must not wait for it to run out.
    made = Cluster(tmp_path, lease_ttl=60.0)
    try:
        bus = await made.start()
        view = tmp_path / "config"
        manifests(view, "a", "b", ingress_to="a")
        first = watch_file(made, "pod-0", view)
        await took_lease(first, "pod-0")
        manifests(view, "a", "b", ingress_to="b")  # A -> B
        await converged(bus, lambda tv: fresh(bus, view, tv), "A -> B")

        first.kill9()
        manifests(view, "a", "b", ingress_to="a")  # back to A while it is down
        (view / "b.yaml").unlink()  # and b deleted
        again = watch_file(made, "pod-0", view)
        await took_lease(again, "pod-0")
        assert "taken back by pod-0" in again.output()
        await converged(bus, lambda tv: fresh(bus, view, tv), "the restarted watcher's resync")
    finally:
        made.stop()


async def test_a_stale_standby_replica_cannot_remove_what_the_holder_published(tmp_path: Path) -> None:
    """Two watch-k8s replicas, the second one's API server from before X existed. Only the lease holder
    lists and publishes, so the stale replica's relist never reaches the log, and a restarted holder
    takes its lease back before the standby could (a TTL long enough for that, 15 s)."""
    cluster = Cluster(tmp_path, lease_ttl=15.0)
    try:
        await _replica_race(cluster, tmp_path)
    finally:
        cluster.stop()


async def _replica_race(cluster: Cluster, tmp_path: Path) -> None:
    bus = await cluster.start()
    async with FakeKubeApi() as live, FakeKubeApi() as stale:
        for kube in (live, stale):
            kube.create(service_manifest("a", 9000))
            kube.create(endpoint_slice_manifest("a", 9000))
        live.create(service_manifest("x", 9001))  # X: the stale replica's API server never saw it
        live.create(endpoint_slice_manifest("x", 9001))

        def replica(name: str, kube: FakeKubeApi) -> Service:
            config = kube.write_kubeconfig(tmp_path / f"{name}.kubeconfig")
            argv = [tool("xdsbus-watch-k8s"), "--kubeconfig", str(config), "--instance-id", name]
            return cluster.spawn(name, argv)

        async def listed(tv: str) -> str:
            return fresh_digest(await list_cluster(bus, live), tv)

        holder = replica("k8s-0", live)
        await took_lease(holder, "k8s-0")
        await converged(bus, listed, "the holder's list, with x")
        standby = replica("k8s-1", stale)
        await eventually(
            lambda: _true("waiting for the lease watch.k8s.default" in standby.output()),
            what="the stale replica standing by",
        )
        terms = await event_terms(bus)

        # The holder restarts (same identity): it takes its lease back before the standby can.
        holder.kill9()
        restarted = replica("k8s-0", live)
        await took_lease(restarted, "k8s-0")
        await converged(bus, listed, "the restarted holder's list, with x")
        assert "publishing as k8s-1" not in standby.output()

        async def new_term() -> set[int] | None:
            # The digest may converge before the restarted holder's resync lands (it publishes what the
            # log already holds): wait for its term's events.
            now = await event_terms(bus)
            return now if len(now) > len(terms) else None

        # The one new term is the restarted holder's.
        after = await eventually(new_term, what="the restarted holder's term in the log")
        assert len(after) == len(terms) + 1
