"""End to end with the Kubernetes source: a fake API server, `xdsbus-watch-k8s` as a process, the builder,
an edge and a real Envoy (`KubeStack`). One stack serves the whole module, the tests run in file order on
the module's event loop (the fake lives in it), and every test uses its own hosts, so each one's
assertions are about its own objects only.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from envoy.config.route.v3 import route_pb2

from tests.support.kube_stack import GATEWAY_ADDRESS, KubeStack, poll_statuses
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import TestCA, certificate_names
from xdsbus_dev.harness.stack import HOST, edge_installed, ingress_manifest, tls_secret_manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

LOAD_BALANCER = [{"ip": GATEWAY_ADDRESS}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[KubeStack]:
    # Module-scoped fixtures are set up before the e2e conftest's autouse check, so check here too.
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with KubeStack(Path(tmp_path_factory.mktemp("kube-e2e"))) as kube_stack:
        yield kube_stack


@pytest_asyncio.fixture(loop_scope="module", autouse=True)
async def _watcher_running(stack: KubeStack) -> AsyncIterator[None]:
    """A test that failed with the watcher stopped must not take the next tests down with it."""
    yield
    if not stack.watcher_running:
        await stack.start_watcher()


async def test_an_ingress_serves_and_gets_the_gateway_address(stack: KubeStack) -> None:
    host = "web.kube.local"
    stack.apply(ingress_manifest("web", host, [("/", "echo-a")]))
    await stack.wait_served(host, "/x", "echo-a-")
    assert await stack.served("nowhere.kube.local") == 404

    async def written() -> bool:
        return stack.load_balancer("web") == LOAD_BALANCER

    await stack.wait(written, what="the status of Ingress web")
    writes = stack.status_writes("web")
    # One effective write through the /status subresource, and no write loop: the status write comes
    # back as a MODIFIED event that changes nothing the watcher compares.
    assert [(w.method, w.changed) for w in writes] == [("PATCH", True)], writes
    assert writes[0].status["loadBalancer"]["ingress"] == LOAD_BALANCER
    # Stack's demo Ingress went through the fake as well.
    assert stack.load_balancer("demo") == LOAD_BALANCER


async def test_an_ingress_deleted_while_the_watcher_is_down_goes_after_the_resync(stack: KubeStack) -> None:
    gone, late = "gone.kube.local", "late.kube.local"
    gone_ingress = ingress_manifest("gone", gone, [("/", "echo-b")])
    stack.apply(gone_ingress)
    await stack.wait_served(gone, "/", "echo-b-")

    # demo.local is polled through the whole restart: it must never miss a beat.
    stop = asyncio.Event()
    poller = asyncio.create_task(poll_statuses(stack, HOST, "/a", stop))
    try:
        await stack.stop_watcher()
        stack.delete(gone_ingress)
        stack.apply(ingress_manifest("late", late, [("/", "echo-a")]))
        # Nobody can tell the builder yet: the last known state stays.
        assert str(await stack.served(gone)).startswith("echo-b-")
        assert await stack.served(late) == 404

        await stack.start_watcher()
        await stack.wait_served(gone, "/", 404)
        await stack.wait_served(late, "/", "echo-a-")
    finally:
        stop.set()
        answers = await poller
    assert len(answers) >= 20, f"too few probes to tell: {len(answers)}"
    gaps = Counter(a for a in answers if not (isinstance(a, str) and a.startswith("echo-a-")))
    assert not gaps, f"demo.local/a answered otherwise during the restart: {gaps} of {len(answers)}"

    # The new process took the status lease over (the old one handed it back on SIGTERM).
    async def late_written() -> bool:
        return stack.load_balancer("late") == LOAD_BALANCER

    await stack.wait(late_written, what="the status of Ingress late")
    assert str(await stack.served("web.kube.local")).startswith("echo-a-")


async def test_a_410_relist_converges_with_changes_made_in_the_gap(stack: KubeStack) -> None:
    moved, gone, new = "gap-moved.kube.local", "gap-gone.kube.local", "gap-new.kube.local"
    gone_ingress = ingress_manifest("gap-gone", gone, [("/", "echo-a")])
    stack.apply(ingress_manifest("gap-moved", moved, [("/", "echo-a")]), gone_ingress)
    await stack.wait_served(moved, "/", "echo-a-")
    await stack.wait_served(gone, "/", "echo-a-")

    def ingress_lists() -> int:
        return sum(1 for r in stack.kube.requests if r.path.endswith("/ingresses") and not r.watch)

    def expired_logged() -> int:
        assert stack.watch_k8s is not None
        return stack.watch_k8s.output().count("Ingress in all namespaces: resourceVersion expired")

    lists_before, expired_before = ingress_lists(), expired_logged()
    # All at once, with no await in between: the watches are cut, the changes land while nobody watches,
    # and the history is compacted, so resuming from the last resourceVersion gets 410 and only a relist
    # can see the deletion.
    assert stack.kube.drop_watches() > 0
    stack.delete(gone_ingress)
    stack.apply(ingress_manifest("gap-moved", moved, [("/", "echo-b")]))
    stack.apply(ingress_manifest("gap-new", new, [("/", "echo-a")]))
    stack.kube.compact()

    await stack.wait_served(gone, "/", 404)
    await stack.wait_served(moved, "/", "echo-b-")
    await stack.wait_served(new, "/", "echo-a-")
    assert ingress_lists() > lists_before, "converged without relisting Ingresses"
    assert expired_logged() > expired_before, "the watcher did not log the 410"
    assert str(await stack.served(HOST, "/a")).startswith("echo-a-")


async def test_tls_secret_rotation_through_kubernetes(stack: KubeStack) -> None:
    assert stack.envoy is not None
    shop = "shop.kube.local"
    ca = TestCA()
    first = ca.issue(shop)
    ingress = ingress_manifest("shop", shop, [("/", "echo-b")])
    ingress["spec"]["tls"] = [{"hosts": [shop], "secretName": "shop-tls"}]
    stack.apply(tls_secret_manifest("shop-tls", first.cert_pem, first.key_pem), ingress)
    context = ca.client_context()

    async def names_served() -> list[str]:
        async with http.Connection("127.0.0.1", stack.https_port, tls=context, server_name=shop) as conn:
            assert conn.peer_certificate is not None
            return certificate_names(conn.peer_certificate)

    async def served_over_tls() -> str | None:
        response = await stack.curl_tls("/pay", shop, context)
        return str(response.json()["pod"]) if response.status == 200 else None

    assert str(await stack.wait(served_over_tls, what="shop over TLS")).startswith("echo-b-")
    assert await names_served() == [shop]

    listeners_before = await stack.envoy.stat("listener_manager.listener_modified")
    rotated = ca.issue(shop, "www." + shop)
    stack.apply(tls_secret_manifest("shop-tls", rotated.cert_pem, rotated.key_pem))

    async def rotated_served() -> bool:
        return await names_served() == [shop, "www." + shop]

    await stack.wait(rotated_served, what="the rotated certificate")
    # Through SDS: the listener was not rebuilt (no drain), and traffic still flows.
    assert await stack.envoy.stat("listener_manager.listener_modified") == listeners_before
    assert str(await served_over_tls()).startswith("echo-b-")


async def test_only_ingresses_of_our_class_are_served(stack: KubeStack) -> None:
    other, control = "nginx.kube.local", "control.kube.local"
    foreign = ingress_manifest("class-nginx", other, [("/", "echo-a")])
    foreign["spec"]["ingressClassName"] = "nginx"
    stack.apply(foreign)
    # Created after the foreign one, so once its status is written the watcher has handled both.
    stack.apply(ingress_manifest("class-control", control, [("/", "echo-a")]))
    await stack.wait_served(control, "/", "echo-a-")

    async def control_written() -> bool:
        return stack.load_balancer("class-control") == LOAD_BALANCER

    await stack.wait(control_written, what="the status of Ingress class-control")
    assert await stack.served(other) == 404
    assert stack.status_writes("class-nginx") == [] and stack.load_balancer("class-nginx") is None

    foreign["spec"]["ingressClassName"] = "higress"
    stack.apply(foreign)
    await stack.wait_served(other, "/", "echo-a-")

    async def foreign_written() -> bool:
        return stack.load_balancer("class-nginx") == LOAD_BALANCER

    await stack.wait(foreign_written, what="the status of Ingress class-nginx")


# -- a burst of changes ---------------------------------------------------------------------------

BURST_INGRESSES = 200
BURST_SUFFIX = ".burst.kube.local"
ECHO_A = "outbound|80||echo-a.demo.svc.cluster.local"
ECHO_B = "outbound|80||echo-b.demo.svc.cluster.local"
# Generation -> the Ingress' paths; each update changes the backends and the paths.
GENERATIONS: list[list[tuple[str, str]]] = [
    [("/", "echo-a")],
    [("/v1", "echo-b")],
    [("/v2", "echo-a"), ("/", "echo-b")],
]
# Generation -> (path, expected answer: pod prefix or status) probed through Envoy.
PROBES: list[list[tuple[str, str | int]]] = [
    [("/x", "echo-a-")],
    [("/v1/x", "echo-b-"), ("/x", 404)],
    [("/v2/x", "echo-a-"), ("/x", "echo-b-")],
]
CLUSTERS = [{ECHO_A}, {ECHO_B}, {ECHO_A, ECHO_B}]


@dataclass
class Burst:
    """500 interleaved operations on 200 Ingresses and the final state they lead to."""

    ops: list[tuple[str, int]]  # ("create" | "update" | "delete", index)
    final: dict[int, int | None]  # index -> generation, None when deleted


def burst_host(index: int) -> str:
    return f"b{index}{BURST_SUFFIX}"


def plan_burst(seed: int = 7) -> Burst:
    """200 creates; 200 updates (indexes below 150 updated once, below 50 twice); 100 deletes (even
    indexes). Each Ingress' operations stay in order, the Ingresses' are shuffled into each other."""
    per_object: list[list[str]] = []
    for index in range(BURST_INGRESSES):
        steps = ["create"] + ["update"] * ((index < 150) + (index < 50))
        if index % 2 == 0:
            steps.append("delete")
        per_object.append(steps)
    rng = random.Random(seed)
    pending = [(index, list(reversed(steps))) for index, steps in enumerate(per_object)]
    ops: list[tuple[str, int]] = []
    # Pick an Ingress with weight = its remaining operations, so the mix stays even to the end.
    while pending:
        weights = [len(rest) for _, rest in pending]
        slot = rng.choices(range(len(pending)), weights)[0]
        index, rest = pending[slot]
        ops.append((rest.pop(), index))
        if not rest:
            pending.pop(slot)
    final: dict[int, int | None] = {}
    for op, index in ops:
        final[index] = None if op == "delete" else (0 if op == "create" else (final[index] or 0) + 1)
    return Burst(ops, final)


def burst_sample(burst: Burst, seed: int = 11) -> list[int]:
    """30 Ingresses: some of every final state (deleted, never updated, updated once, updated twice)."""
    rng = random.Random(seed)
    by_state: dict[int | None, list[int]] = {}
    for index, final in sorted(burst.final.items()):
        by_state.setdefault(final, []).append(index)
    assert set(by_state) == {None, 0, 1, 2}, by_state.keys()
    counts = {None: 9, 0: 7, 1: 7, 2: 7}
    return sorted(i for state, n in counts.items() for i in rng.sample(by_state[state], n))


def route_clusters(vhost: route_pb2.VirtualHost) -> set[str]:
    """The clusters a virtual host's routes forward to."""
    return {route.route.cluster for route in vhost.routes if route.route.cluster}


def other_vhosts(config: route_pb2.RouteConfiguration) -> list[bytes]:
    """The virtual hosts not of the burst, serialized: the burst must leave them exactly as they were."""
    return [
        vhost.SerializeToString(deterministic=True)
        for vhost in config.virtual_hosts
        if not any(d.endswith(BURST_SUFFIX) for d in vhost.domains)
    ]


async def test_a_burst_of_500_ingress_changes_converges(stack: KubeStack) -> None:
    burst = plan_burst()
    assert Counter(op for op, _ in burst.ops) == {"create": 200, "update": 200, "delete": 100}
    sample = burst_sample(burst)
    _, config_before = await stack.route_config()
    others_before = other_vhosts(config_before)

    generation: dict[int, int] = {}
    started = time.monotonic()
    for op, index in burst.ops:
        name = f"burst-{index}"
        if op == "delete":
            stack.delete(("networking.k8s.io/v1", "Ingress", "demo", name))
            continue
        generation[index] = 0 if op == "create" else generation[index] + 1
        stack.apply(ingress_manifest(name, burst_host(index), GENERATIONS[generation[index]]))
        # Let the fake stream each change as it happens (no waiting, only a turn of the loop).
        await asyncio.sleep(0)
    applied = time.monotonic()

    expected_hosts = {burst_host(i) for i, g in burst.final.items() if g is not None}
    last_ledger: list[Any] = []
    last_sample: list[Any] = []

    async def ledger_converged() -> bool:
        version, config = await stack.route_config()
        hosts = {d for vhost in config.virtual_hosts for d in vhost.domains if d.endswith(BURST_SUFFIX)}
        last_ledger[:] = [version, len(hosts), sorted(hosts ^ expected_hosts)[:5]]
        return hosts == expected_hosts and other_vhosts(config) == others_before

    def probes(index: int) -> list[tuple[str, str | int]]:
        final = burst.final[index]
        return [("/x", 404)] if final is None else PROBES[final]

    async def answers(index: int) -> list[str | int]:
        return [await stack.served(burst_host(index), path) for path, _ in probes(index)]

    def matches(index: int, got: list[str | int]) -> bool:
        return all(
            g == want if isinstance(want, int) else isinstance(g, str) and g.startswith(want)
            for g, (_, want) in zip(got, probes(index), strict=True)
        )

    async def envoy_converged() -> bool:
        got = await asyncio.gather(*(answers(i) for i in sample))
        wrong = [(i, burst.final[i], g) for i, g in zip(sample, got, strict=True) if not matches(i, g)]
        last_sample[:] = wrong[:5]
        return not wrong

    async def converged() -> bool:
        return await ledger_converged() and await envoy_converged()

    try:
        await stack.wait(converged, timeout=60, interval=0.1, what="the burst to converge")
    except AssertionError as exc:
        raise AssertionError(f"ledger: {last_ledger}; sample mismatches: {last_sample}\n{exc}") from None
    done = time.monotonic()
    print(
        f"\nburst: {len(burst.ops)} changes applied in {applied - started:.2f}s, "
        f"converged (ledger + Envoy) {done - applied:.2f}s after the last one, {done - started:.2f}s in all"
    )

    # The routes of the final version point where the last generation of each Ingress says.
    _, config = await stack.route_config()
    clusters = {vhost.domains[0]: route_clusters(vhost) for vhost in config.virtual_hosts}
    for index, final in burst.final.items():
        if final is not None:
            assert clusters[burst_host(index)] == CLUSTERS[final], (index, final, clusters[burst_host(index)])

    # Every surviving Ingress got the gateway's address, with one effective write each: the watcher's
    # own status writes (and the burst's updates racing them) never start a write loop.
    survivors = [f"burst-{i}" for i, final in burst.final.items() if final is not None]

    async def statuses_written() -> list[str]:
        missing = [name for name in survivors if stack.load_balancer(name) != LOAD_BALANCER]
        assert not missing, f"{len(missing)} without status, e.g. {missing[:5]}"
        return survivors

    await stack.wait(statuses_written, what="the status of every surviving burst Ingress")
    effective = Counter(w.name for w in stack.kube.status_writes if w.changed)
    assert max(effective.values()) == 1, effective.most_common(5)
