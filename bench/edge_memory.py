"""edge_memory: what a real edge's memory grows by when it holds 10k clusters, against their bytes.

Setup: a real nats-server; one `xdsbus-edge` subprocess started on an empty ledger (it listens, and
waits for a first version). Its RSS then is the starting point. The builder's own resources are then
published as one ledger version: `Translator().full_build()` of BENCH_MEMORY_SERVICES (10k) Services
with BENCH_MEMORY_ENDPOINTS (10) endpoints each and BENCH_MEMORY_INGRESSES (10k) Ingresses (bench/
workload.py, as in builder_full_build), i.e. 10k Clusters, 10k ClusterLoadAssignments, one Listener and
one RouteConfiguration with 10k virtual hosts, published by the builder's LedgerPublisher. The edge
fetches and verifies every body and switches to the version (/ready), then RSS is sampled until stable.

value     RSS growth, bytes: VmRSS (/proc/<pid>/status) once ready and stable, minus VmRSS at start.
baseline  bytes of the resources held: the sum of their serialized `Any` sizes (the ledger bodies).
          ratio = value / baseline; the budget of docs/design.md §8 is ratio <= 2 ("under 2x").
params    RSS at start, when ready, with one and with two SotW proxies connected that subscribed to everything
          (CDS and LDS wildcard, EDS and RDS by name: the edge then also holds the joined wildcard
          responses of that version, shared, and each stream's subscribed names);
          the edge's own xdsbus_edge_snapshot_bytes; resource counts and bytes per type.
Checks: the edge holds every resource (xdsbus_edge_snapshot_resources), and each proxy received every
resource of every type it asked for.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import workload
from bench.ads_proxy import SotwProxy
from bench.edge_fanout_1000 import EdgeSide, _metric_sum
from bench.results_io import env_float, env_int, write_result
from xdsbus.bus import BusSettings, connect
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness import http
from xdsbus_dev.harness.processes import NatsServer

NAME = "edge_memory"
PARAMS = {
    "BENCH_MEMORY_SERVICES": (10_000, "Services: one Cluster and one ClusterLoadAssignment each"),
    "BENCH_MEMORY_ENDPOINTS": (10, "endpoints per ClusterLoadAssignment"),
    "BENCH_MEMORY_INGRESSES": (10_000, "Ingresses: one virtual host each in the RouteConfiguration"),
    "BENCH_MEMORY_RSS_WINDOW": (2.0, "seconds RSS must hold still (within 0.5%) to count as stable"),
}
BUDGET = 2.0
SHORT = {
    CLUSTER: "Cluster",
    ENDPOINT: "ClusterLoadAssignment",
    LISTENER: "Listener",
    ROUTE: "RouteConfiguration",
}


def _progress(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


def rss_bytes(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile and VmHWM of a process, bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024
    return out


async def stable_rss(pid: int, *, window: float = 2.0, timeout: float = 30.0) -> dict[str, int]:
    """VmRSS once it moved less than 0.5% over `window` seconds (or at `timeout`)."""
    deadline = time.monotonic() + timeout
    samples: list[tuple[float, dict[str, int]]] = []
    while True:
        now = time.monotonic()
        samples.append((now, rss_bytes(pid)))
        recent = [s["VmRSS"] for t, s in samples if now - t <= window]
        old_enough = now - samples[0][0] >= window
        if (old_enough and (max(recent) - min(recent)) <= 0.005 * max(recent)) or now > deadline:
            return samples[-1][1]
        await asyncio.sleep(0.25)


async def _listening(edge: EdgeSide, timeout: float = 30) -> None:
    """Until the HTTP port answers (503 before the first version)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            await http.get("127.0.0.1", edge.http_port, "/ready", timeout=5)
            return
        except (OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError):
            await asyncio.sleep(0.05)
    raise TimeoutError("edge HTTP port not answering")


async def _proxy(edge: EdgeSide, table_names: dict[str, list[str]], node_id: str) -> tuple[SotwProxy, int]:
    """A SotW proxy on ADS that subscribes to everything (and stays connected); the responses' bytes."""
    client = SotwProxy(edge.xds_port, node_id)
    total = 0
    try:
        for type_url in (CLUSTER, ENDPOINT, LISTENER, ROUTE):
            names = [] if type_url in (CLUSTER, LISTENER) else table_names[type_url]
            await client.request(type_url, names)
            response = await client.recv(timeout=60)
            while response.type_url != type_url:
                response = await client.recv(timeout=60)
            total += response.ByteSize()
            expected = len(table_names[type_url])
            if len(response.resources) != expected:
                raise AssertionError(f"{node_id}: {len(response.resources)} of {expected} {type_url}")
            await client.ack(response, names)
        await client.quiet()
    except BaseException:
        await client.close()
        raise
    return client, total


async def _main(tmp: Path) -> dict[str, Any]:
    services = env_int("BENCH_MEMORY_SERVICES", 10_000)
    endpoints = env_int("BENCH_MEMORY_ENDPOINTS", 10)
    ingresses = env_int("BENCH_MEMORY_INGRESSES", 10_000)
    window = env_float("BENCH_MEMORY_RSS_WINDOW", 2.0)

    translator = Translator()
    translator.full_build(workload.folded_state(services, endpoints, ingresses))
    table = translator.table
    changes = table.commit()
    by_type: dict[str, dict[str, int]] = {}
    names: dict[str, list[str]] = {}
    for key, res in table.items():
        entry = by_type.setdefault(SHORT.get(key.type_url, key.type_url), {"count": 0, "bytes": 0})
        entry["count"] += 1
        entry["bytes"] += len(res.body)
        names.setdefault(key.type_url, []).append(key.name)
    resource_bytes = sum(t["bytes"] for t in by_type.values())

    nats = NatsServer(tmp / "nats")
    nats.start()
    edge = EdgeSide(tmp, nats.url)
    bus = await connect(BusSettings(url=nats.url), name="bench-memory", attempts=5)
    proxies: list[SotwProxy] = []
    try:
        edge.service.start()
        await _listening(edge)
        # Stable for a window: the edge has settled on following the (empty) ledger.
        at_start = await stable_rss(edge.pid, window=window)
        _progress(f"edge RSS at start {at_start['VmRSS'] / 2**20:.1f} MiB; publishing {len(table)} resources")

        publisher = LedgerPublisher(bus, "default", translator.settings.describe())
        t0 = time.monotonic()
        await publisher.publish(
            version=1, first_seq=1, changes=changes, digest=table.digest(), resource_count=len(table)
        )
        published_s = time.monotonic() - t0
        t0 = time.monotonic()
        await edge.ready(timeout=120)
        load_s = time.monotonic() - t0
        when_ready = await stable_rss(edge.pid, window=window)
        _progress(f"edge ready in {load_s:.1f} s; RSS {when_ready['VmRSS'] / 2**20:.1f} MiB")
        metrics = await edge.metrics()
        snapshot_bytes = _metric_sum(metrics, "xdsbus_edge_snapshot_bytes")
        snapshot_resources = _metric_sum(metrics, "xdsbus_edge_snapshot_resources")
        if snapshot_resources != len(table):
            raise AssertionError(f"the edge holds {snapshot_resources:g} resources of {len(table)}")

        first, response_bytes = await _proxy(edge, names, "bench-memory-1")
        proxies.append(first)
        with_proxy = await stable_rss(edge.pid, window=window)
        second, _ = await _proxy(edge, names, "bench-memory-2")
        proxies.append(second)
        with_two = await stable_rss(edge.pid, window=window)
        _progress(
            f"with one proxy holding everything: RSS {with_proxy['VmRSS'] / 2**20:.1f} MiB, "
            f"with two {with_two['VmRSS'] / 2**20:.1f} MiB"
        )
    finally:
        for client in proxies:
            await client.close()
        edge.service.terminate()
        await bus.close()
        nats.stop()

    growth = when_ready["VmRSS"] - at_start["VmRSS"]
    mib = 2**20
    return {
        "value_is": "edge RSS growth, bytes: VmRSS when ready (stable) minus VmRSS at start on an empty "
        "ledger",
        "baseline_is": "sum of the serialized Any sizes of the resources the edge holds",
        "services": services,
        "endpoints_per_service": endpoints,
        "ingresses": ingresses,
        "resources": len(table),
        "resources_by_type": by_type,
        "resource_bytes": resource_bytes,
        "edge_snapshot_bytes_metric": int(snapshot_bytes),
        "edge_snapshot_resources_metric": int(snapshot_resources),
        "rss_growth_bytes": growth,
        "rss_growth_per_resource_bytes": round(growth / len(table)),
        "rss_at_start_mib": round(at_start["VmRSS"] / mib, 1),
        "rss_ready_mib": round(when_ready["VmRSS"] / mib, 1),
        "rss_anon_at_start_mib": round(at_start["RssAnon"] / mib, 1),
        "rss_anon_ready_mib": round(when_ready["RssAnon"] / mib, 1),
        "rss_file_at_start_mib": round(at_start["RssFile"] / mib, 1),
        "rss_file_ready_mib": round(when_ready["RssFile"] / mib, 1),
        "rss_peak_hwm_mib": round(when_ready["VmHWM"] / mib, 1),
        "rss_with_one_proxy_mib": round(with_proxy["VmRSS"] / mib, 1),
        "rss_growth_with_one_proxy_ratio": round(
            (with_proxy["VmRSS"] - at_start["VmRSS"]) / resource_bytes, 3
        ),
        "rss_with_two_proxies_mib": round(with_two["VmRSS"] / mib, 1),
        # What one more proxy subscribed to everything costs (the joined SotW responses of a version are
        # shared; its subscribed names and stream state are its own).
        "rss_per_additional_proxy_mib": round((with_two["VmRSS"] - with_proxy["VmRSS"]) / mib, 2),
        "one_proxy_response_bytes": response_bytes,
        "publish_s": round(published_s, 2),
        "edge_load_s": round(load_s, 2),
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-memory-") as tmp:
        params = asyncio.run(_main(Path(tmp)))
    return write_result(
        NAME,
        value=params["rss_growth_bytes"],
        unit="bytes",
        baseline=params["resource_bytes"],
        budget=BUDGET,
        budget_on="ratio",
        # Asserted in _main and _proxy.
        checks={"edge_holds_every_resource": True, "proxies_received_everything": True},
        params=params,
    )
