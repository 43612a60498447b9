"""edge_startup: a real edge's start to serving, with a short and with a long ledger history.

Setup (not timed): for each history length, a real nats-server of its own and a ledger written like the
builder writes it (LedgerPublisher: bodies first, then the record): a first version with
BENCH_STARTUP_RESOURCES (20k) resources (half EDS Clusters, half their ClusterLoadAssignments), then
one-endpoint changes as further versions, up to BENCH_STARTUP_SHORT (10) or BENCH_STARTUP_LONG (10,000)
versions in all. Ledger bases (docs/design.md §5) are written as the builder writes them: at the first
version and every BENCH_STARTUP_BASE_EVERY (1,000) versions after it.

value     median over BENCH_STARTUP_REPEAT (3) starts of: an `xdsbus-edge` subprocess spawned, to an ADS
          SotW client having received every Cluster (CDS wildcard) and every ClusterLoadAssignment (EDS by
          name) of the head version, with the long history.
baseline  the same with the short history. ratio = value / baseline; the budget (issue 12) is
          ratio <= 1.2: start-up costs a base plus at most `base_every` records, not the history.
          The starts of the two histories alternate, so that other load on the machine weighs on both.
params    both medians and every start; the time to /ready (first full snapshot); the long history
          started once with its bases deleted (what start-up cost before bases, for comparison); the
          records read after the newest base; ledger bytes.

Checks: each edge serves the head version with every resource (its metrics), the client receives every
resource of the head, and the edge without bases serves the same head.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

from bench.ads_proxy import SotwProxy
from bench.edge_fanout_1000 import EdgeSide, LedgerWriter, _cla, _cluster, _cluster_name, _ips, _metric_sum
from bench.results_io import env_int, median, write_result
from xdsbus.bus import LEDGER_STREAM, Bus, BusSettings, connect
from xdsbus.contract import digest as digests
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.ledger import bases
from xdsbus_dev.harness.processes import NatsServer

NAME = "edge_startup"
PARAMS = {
    "BENCH_STARTUP_RESOURCES": (20_000, "resources of the head: half Clusters, half ClusterLoadAssignments"),
    "BENCH_STARTUP_SHORT": (10, "versions of history for the baseline"),
    "BENCH_STARTUP_LONG": (10_000, "versions of history for the value"),
    "BENCH_STARTUP_BASE_EVERY": (1000, "a ledger base every this many versions (the builder's --base-every)"),
    "BENCH_STARTUP_REPEAT": (3, "edge starts per history; the median counts"),
}
BUDGET = 1.2
ENDPOINTS = 3


def _progress(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


async def _write_history(writer: LedgerWriter, clusters: int, versions: int, base_every: int) -> int:
    """The first version with every resource, then one-endpoint changes; bases as the builder writes
    them. Returns the number of bases written."""
    for k in range(clusters):
        name = _cluster_name(k)
        writer.put(CLUSTER, _cluster(name))
        writer.put(ENDPOINT, _cla(name, _ips(k, ENDPOINTS, 0)))
    written = 0
    for version in range(1, versions + 1):
        if version > 1:
            k = version % clusters
            writer.put(ENDPOINT, _cla(_cluster_name(k), _ips(k, ENDPOINTS, version)))
        changes = writer.table.commit()
        record = await writer.publisher.publish(
            version=version,
            first_seq=writer.publisher.head_version + 1,
            changes=changes,
            digest=writer.table.digest(),
            resource_count=len(writer.table),
        )
        writer.version = version
        if (version - 1) % base_every == 0:
            await bases.save(
                writer.bus,
                scope=writer.scope,
                version=version,
                stream_seq=writer.publisher.last_stream_seq,
                digest=record.digest,
                digest_algorithm=digests.CURRENT,
                resources=writer.table.committed(),
            )
            written += 1
        if version % 2000 == 0:
            _progress(f"{version} of {versions} versions written")
    return written


async def _client_gets_everything(edge: EdgeSide, names: list[str], version: int) -> None:
    """An ADS SotW client: CDS wildcard, then EDS naming every assignment; each answer must be the head
    version with every resource."""
    client = SotwProxy(edge.xds_port, "bench-startup")
    try:
        for type_url, asked in ((CLUSTER, []), (ENDPOINT, names)):
            await client.request(type_url, asked)
            response = await client.recv(timeout=120)
            while response.type_url != type_url:
                response = await client.recv(timeout=120)
            if response.version_info != str(version) or len(response.resources) != len(names):
                raise AssertionError(
                    f"{type_url}: version {response.version_info} with {len(response.resources)} resources, "
                    f"expected {version} with {len(names)}"
                )
            await client.ack(response, asked)
    finally:
        await client.close()


async def _start_once(tmp: Path, url: str, names: list[str], version: int, tag: str) -> dict[str, float]:
    """Spawn an edge, wait for /ready and for a client to get every resource; seconds from spawn."""
    edge = EdgeSide(tmp / tag, url)
    (tmp / tag).mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    edge.service.start()
    try:
        await edge.ready(timeout=600)
        ready_s = time.monotonic() - started
        await _client_gets_everything(edge, names, version)
        serving_s = time.monotonic() - started
        metrics = await edge.metrics()
        held = _metric_sum(metrics, "xdsbus_edge_snapshot_resources")
        served = _metric_sum(metrics, "xdsbus_edge_snapshot_version")
        if held != 2 * len(names) or served != version:
            raise AssertionError(f"edge holds {held:g} resources at version {served:g}")
    finally:
        edge.service.terminate()
    return {"ready_s": round(ready_s, 3), "serving_s": round(serving_s, 3)}


class _Ledger(msgspec.Struct):
    """One history on a nats-server of its own, ready for edges to start on."""

    nats: NatsServer
    bus: Bus
    names: list[str]
    head: int
    facts: dict[str, Any]


async def _prepare(tmp: Path, resources: int, versions: int, base_every: int) -> _Ledger:
    clusters = max(1, resources // 2)
    nats = NatsServer(tmp / "nats")
    nats.start()
    bus = await connect(BusSettings(url=nats.url), name="bench-startup", attempts=5)
    writer = LedgerWriter(bus)
    t0 = time.monotonic()
    written = await _write_history(writer, clusters, versions, base_every)
    write_s = time.monotonic() - t0
    newest = await bases.newest_at_or_before(bus, writer.scope)
    facts = {
        "versions": versions,
        "bases": written,
        "records_after_newest_base": writer.version - newest.version if newest else writer.version,
        "ledger_stream_bytes": (await bus.js.stream_info(LEDGER_STREAM)).state.bytes,
        "write_s": round(write_s, 1),
    }
    _progress(f"{versions} versions written in {write_s:.1f} s")
    names = [_cluster_name(k) for k in range(clusters)]
    return _Ledger(nats=nats, bus=bus, names=names, head=writer.version, facts=facts)


async def _main(tmp: Path) -> dict[str, Any]:
    resources = env_int("BENCH_STARTUP_RESOURCES", 20_000)
    short = env_int("BENCH_STARTUP_SHORT", 10)
    long = env_int("BENCH_STARTUP_LONG", 10_000)
    base_every = env_int("BENCH_STARTUP_BASE_EVERY", 1000)
    repeat = env_int("BENCH_STARTUP_REPEAT", 3)
    ledgers: list[_Ledger] = []
    try:
        for tag, versions in (("short", short), ("long", long)):
            ledgers.append(await _prepare(tmp / tag, resources, versions, base_every))
        starts: dict[str, list[dict[str, float]]] = {"short": [], "long": []}
        # Interleaved, so that load from elsewhere on the machine weighs on both alike.
        for i in range(repeat):
            for tag, ledger in zip(("short", "long"), ledgers, strict=True):
                started = await _start_once(
                    tmp / tag, ledger.nats.url, ledger.names, ledger.head, f"edge-{i}"
                )
                starts[tag].append(started)
                _progress(f"{tag} history, start {i + 1}: serving in {started['serving_s']} s")
        long_ledger = ledgers[1]
        for stored in await bases.stored(long_ledger.bus, "default"):
            await long_ledger.bus.ledger_bases.delete(stored.name)
        without = await _start_once(
            tmp / "long", long_ledger.nats.url, long_ledger.names, long_ledger.head, "bare"
        )
        _progress(f"long history without bases: serving in {without['serving_s']} s")
    finally:
        for ledger in ledgers:
            await ledger.bus.close()
            ledger.nats.stop()
    runs = {}
    for tag, ledger in zip(("short", "long"), ledgers, strict=True):
        runs[tag] = {
            **ledger.facts,
            "starts": starts[tag],
            "serving_s": median([s["serving_s"] for s in starts[tag]]),
            "ready_s": median([s["ready_s"] for s in starts[tag]]),
        }
    runs["long"]["without_bases"] = without
    return {
        "value_is": f"median s from spawning an edge to an ADS client holding all {resources} resources, "
        f"{long} versions of history",
        "baseline_is": f"the same with {short} versions of history",
        "resources": resources,
        "base_every": base_every,
        **runs,
        "value": runs["long"]["serving_s"],
        "baseline": runs["short"]["serving_s"],
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-startup-") as tmp:
        params = asyncio.run(_main(Path(tmp)))
    return write_result(
        NAME,
        value=params.pop("value"),
        unit="s",
        baseline=params.pop("baseline"),
        budget=BUDGET,
        budget_on="ratio",
        # Asserted in _start_once and _client_gets_everything.
        checks={"edge_serves_the_head_with_every_resource": True, "client_received_every_resource": True},
        params=params,
    )
