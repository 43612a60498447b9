"""Health and metrics of the builder and the watchers (docs/design.md §9): `--http-listen` serves
/metrics, /ready and /live; /ready fails while NATS is away or the layout is missing; the watchers' counters
and lease figures move."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.fakes.kube_api import FakeKubeApi
from xdsbus.bus import Bus
from xdsbus.events import MAX_BODY_BYTES
from xdsbus.health import REGISTRY, Health, HealthServer, Listen, listen_address
from xdsbus.watcher import Watcher
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, free_port, tool


async def http_get(port: int, path: str) -> tuple[int, str]:
    """GET http://127.0.0.1:<port><path>: status and body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        await writer.drain()
        data = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()


async def answer(port: int, path: str) -> tuple[int, str] | None:
    """`http_get`, None while nothing listens yet."""
    try:
        return await http_get(port, path)
    except OSError:
        return None


def sample(metrics: str, name: str, **labels: str) -> float | None:
    """The value of one series in a Prometheus text page, None when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(f"{name}{{{wanted}}}" if wanted else name) + r" (\S+)$"
    match = re.search(pattern, metrics, re.MULTILINE)
    return float(match.group(1)) if match else None


# -- the module -----------------------------------------------------------------------------------


def test_listen_address() -> None:
    assert listen_address("127.0.0.1:9") == Listen("127.0.0.1", 9)
    assert listen_address(":9") == Listen("0.0.0.0", 9)
    assert listen_address("[::1]:9") == Listen("::1", 9)
    assert listen_address("off") is None
    for bad in ("9", "host:", "host:port", "host:70000"):
        with pytest.raises(Exception, match="expected HOST:PORT"):
            listen_address(bad)


async def test_pages_without_nats() -> None:
    health = Health()
    health.add_check(lambda: "something blocks it")
    server = HealthServer(health)
    assert await server.start(Listen("127.0.0.1", 0))
    try:
        assert await http_get(server.port, "/live") == (200, "live\n")
        status, body = await http_get(server.port, "/ready")
        assert status == 503
        assert "connecting to NATS" in body and "something blocks it" in body
        status, body = await http_get(server.port, "/metrics")
        assert status == 200 and sample(body, "xdsbus_nats_connected") == 0
        assert (await http_get(server.port, "/nothing"))[0] == 404
    finally:
        await server.stop()


async def test_a_busy_default_port_is_skipped_a_chosen_one_is_an_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert not await HealthServer(Health()).start(Listen("127.0.0.1", port, explicit=False))
        with pytest.raises(OSError):
            await HealthServer(Health()).start(Listen("127.0.0.1", port))


class _Plain(Watcher):
    async def watch(self) -> None:
        raise NotImplementedError


async def test_watcher_counts_published_and_refused_events(bus: Bus) -> None:
    watcher = _Plain(bus, "test/counted")
    published = REGISTRY.counter("xdsbus_watcher_events_published", "")
    refused = REGISTRY.counter("xdsbus_watcher_events_refused", "")
    assert await watcher.upsert("ConfigMap", "default/a", {"data": {"k": "v"}})
    await watcher.delete("ConfigMap", "default/a")
    assert published.value("test/counted", "ConfigMap") == 2
    assert not await watcher.upsert("ConfigMap", "default/big", {"data": {"k": "x" * (MAX_BODY_BYTES + 1)}})
    assert refused.value("test/counted", "ConfigMap") == 1
    assert published.value("test/counted", "ConfigMap") == 2


# -- every service as a process -------------------------------------------------------------------

SERVICES = {
    "xdsbus-builder": [],
    "xdsbus-watch-file": ["--dir", "{dir}", "--source-name", "health"],
    "xdsbus-watch-k8s": [],
    "xdsbus-watch-nacos": [],
    "xdsbus-watch-consul": [],
    "xdsbus-watch-eureka": [],
}


@contextlib.asynccontextmanager
async def running(command: str, nats: NatsServer, tmp_path: Path) -> AsyncIterator[tuple[Service, int]]:
    """`command` connected to `nats`, its health port on loopback; killed on exit."""
    port = free_port()
    (tmp_path / "manifests").mkdir(exist_ok=True)
    args = [a.format(dir=tmp_path / "manifests") for a in SERVICES[command]]
    env = {"XDSBUS_HTTP_LISTEN": f"127.0.0.1:{port}"}
    async with contextlib.AsyncExitStack() as stack:
        if command == "xdsbus-watch-k8s":
            kube = await stack.enter_async_context(FakeKubeApi())
            env["KUBECONFIG"] = str(kube.write_kubeconfig(tmp_path / "kubeconfig"))
        service = Service(
            [tool(command), "--nats-url", nats.url, "--instance-id", "h1", *args],
            tmp_path / f"{command}.log",
            env=env,
        ).start()
        try:
            yield service, port
        finally:
            # A clean stop is each service's own test (tests/test_stop_without_nats.py, */test_service.py);
            # watch-k8s stopped during its first resync can hang past 10 s: not what these tests are about.
            service.kill9()


@pytest.mark.slow
@pytest.mark.parametrize("command", sorted(SERVICES))
async def test_each_service_serves_its_pages(
    command: str, nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> None:
    async with running(command, nats_server, tmp_path) as (service, port):

        async def ready() -> bool:
            got = await answer(port, "/ready")
            return got == (200, "ready\n")

        await eventually(ready, what=f"{command} ready:\n{service.output()}")
        assert await http_get(port, "/live") == (200, "live\n")
        status, metrics = await http_get(port, "/metrics")
        assert status == 200
        assert sample(metrics, "xdsbus_nats_connected") == 1
        if command == "xdsbus-builder":

            async def leading() -> bool:
                metrics = (await http_get(port, "/metrics"))[1]
                return sample(metrics, "xdsbus_builder_lease_holder", scope="default") == 1

            await eventually(leading, what="the builder leading")
        if command in ("xdsbus-watch-nacos", "xdsbus-watch-consul", "xdsbus-watch-eureka"):
            lease = f"{command.removeprefix('xdsbus-')}.default"

            async def group_leading() -> bool:
                metrics = (await http_get(port, "/metrics"))[1]
                return sample(metrics, "xdsbus_registry_group_lease_holder", lease=lease) == 1

            await eventually(group_leading, what=f"{command} holding {lease}")


@pytest.mark.slow
async def test_a_watcher_without_nats_is_not_ready_until_it_is_back(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    (tmp_path / "manifests").mkdir()
    (tmp_path / "manifests" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: default}\ndata: {k: v}\n"
    )
    async with running("xdsbus-watch-file", nats_server, tmp_path) as (service, port):

        async def published() -> float | None:
            got = await answer(port, "/metrics")
            if got is None:
                return None
            metrics = got[1]
            return sample(metrics, "xdsbus_watcher_events_published", source="file/health", kind="ConfigMap")

        first = await eventually(published, what=f"the ConfigMap published:\n{service.output()}")
        (tmp_path / "manifests" / "cm.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one, namespace: default}\ndata: {k: w}\n"
        )

        async def moved() -> bool:
            return ((await published()) or 0) > first

        await eventually(moved, what="the change counted")
        metrics = (await http_get(port, "/metrics"))[1]
        assert sample(metrics, "xdsbus_watcher_lease_holder", source="file/health") == 1
        assert (sample(metrics, "xdsbus_watcher_lease_term", source="file/health") or 0) > 0
        assert sample(metrics, "xdsbus_watcher_resync_age_seconds", source="file/health") is not None
        assert sample(metrics, "xdsbus_watcher_source_lag_seconds", source="file/health") is not None
        assert (await http_get(port, "/ready"))[0] == 200

        nats_server.stop()

        async def not_ready() -> bool:
            status, body = await http_get(port, "/ready")
            return status == 503 and "NATS connection lost" in body

        await eventually(not_ready, what="not ready without NATS")
        assert (await http_get(port, "/live"))[0] == 200
        nats_server.start()

        async def ready() -> bool:
            return (await http_get(port, "/ready"))[0] == 200

        await eventually(ready, what=f"ready again:\n{service.output()}")


@pytest.mark.slow
async def test_not_ready_while_the_layout_is_missing(tmp_path: Path) -> None:
    bare = NatsServer(tmp_path / "bare", layout=None)
    bare.start()
    try:
        async with running("xdsbus-watch-file", bare, tmp_path) as (service, port):

            async def waiting() -> bool:
                got = await answer(port, "/ready")
                return got is not None and got[0] == 503 and "layout" in got[1]

            await eventually(waiting, what=f"not ready without the layout:\n{service.output()}")
    finally:
        bare.stop()


async def test_watcher_lease_figures_follow_lead_and_release(bus: Bus) -> None:
    watcher = _Plain(bus, "test/leased", instance_id="me", lease_ttl=2.0)

    def holder() -> float | None:
        return sample(REGISTRY.render(), "xdsbus_watcher_lease_holder", source="test/leased")

    assert holder() == 0
    assert await watcher.lead()
    assert holder() == 1
    term = sample(REGISTRY.render(), "xdsbus_watcher_lease_term", source="test/leased")
    assert term is not None and term == watcher.term > 0
    await watcher.release()
    assert holder() == 0
