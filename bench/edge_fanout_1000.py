"""edge_fanout_1000: one endpoint change pushed by a real edge to 1,000 connected ADS clients.

Setup (not timed): a real nats-server; a ledger written by hand as the builder would (bodies first, then
the record) with BENCH_FANOUT_CLUSTERS (100) EDS clusters and their ClusterLoadAssignments of
BENCH_FANOUT_ENDPOINTS (10) endpoints; one `xdsbus-edge` subprocess following it; one client process
(bench/fanout_clients.py) with BENCH_FANOUT_CLIENTS (1,000) ADS SotW streams, one gRPC channel (one TCP
connection) each, every one subscribed like Envoy: CDS wildcard, then EDS naming every assignment, with
an ACK for every response.

value     p99 over BENCH_FANOUT_ROUNDS (20) rounds of: the time from publishing a ledger record that
          changes one endpoint of one ClusterLoadAssignment (its body is stored first, as the builder does)
          to the last of the 1,000 clients receiving the EDS response of that version. The edge has to see
          the record, fetch and verify the body, switch snapshots and push to every stream.
baseline  the same p99 for a raw grpc.aio server with no xdsbus code (bench/raw_xds_server.py) that, on
          a unary trigger RPC carrying the bytes, writes the same pre-serialized DiscoveryResponse (the
          same ClusterLoadAssignment, version and type; only the nonce may differ) to its 1,000 streams:
          trigger to the last client receiving it. A second client process of the same code holds those
          1,000 streams, connected to both servers at once; the rounds alternate between them.
          ratio = edge p99 / raw p99; the budget of docs/design.md §8 is ratio <= 1.1.
params    p50/p99 of both; CPU seconds each server process used per round (from /proc/<pid>/stat);
          first-to-last client spread; response sizes; responses repeated (0 expected); the RSS of both
          servers with no client, with every client connected and after the rounds. The clients may be
          split over BENCH_FANOUT_CLIENT_PROCESSES processes per server (edge_fanout_10000 does).

Checks: every client received every change on both servers, no client stream failed, and no client
received a version twice.

Clocks: every process reads time.monotonic() (CLOCK_MONOTONIC, one clock for the whole machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from bench.results_io import env_float, env_int, latency_summary, median, write_result
from xdsbus.bus import LEDGER_STREAM, Bus, BusSettings, connect, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import pack_any
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.ledger.records import changes_message
from xdsbus.ledger.store import store_bodies
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.translate.resource_table import ResourceTable
from xdsbus_dev.harness import http
from xdsbus_dev.harness.processes import NatsServer, Service, free_port, tool, wait_for_port

NAME = "edge_fanout_1000"
BUDGET_RATIO = 1.1
PARAMS = {
    "BENCH_FANOUT_CLIENTS": (1_000, "ADS SotW clients (streams)"),
    "BENCH_FANOUT_CLIENT_PROCESSES": (1, "client processes per server, the clients split among them"),
    "BENCH_FANOUT_STREAMS_PER_CHANNEL": (1, "streams per gRPC channel (1: one TCP connection per client)"),
    "BENCH_FANOUT_CLUSTERS": (100, "EDS clusters (and ClusterLoadAssignments) every client subscribes to"),
    "BENCH_FANOUT_ENDPOINTS": (10, "endpoints per ClusterLoadAssignment"),
    "BENCH_FANOUT_ROUNDS": (20, "timed changes per server (after BENCH_FANOUT_WARMUP)"),
    "BENCH_FANOUT_WARMUP": (3, "untimed changes per server first"),
    "BENCH_FANOUT_SETTLE": (0.3, "seconds of quiet between rounds (ACKs drained)"),
}

CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent


def _progress(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


def _cluster_name(k: int) -> str:
    return f"outbound|80||svc-{k:05d}.default.svc.cluster.local"


def _ips(k: int, endpoints: int, generation: int) -> list[str]:
    """Endpoint addresses of cluster k; a new generation moves endpoint 0 elsewhere."""
    ips = [f"10.{k // 256 % 256}.{k % 256}.{100 + j}" for j in range(endpoints)]
    ips[0] = f"10.200.{generation // 256 % 256}.{generation % 256}"
    return ips


def _cluster(name: str) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = 1
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.V3
    return c


def _cla(name: str, ips: list[str], port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    add = cla.endpoints.add().lb_endpoints.add
    for ip in ips:
        socket_address = add().endpoint.address.socket_address
        socket_address.address, socket_address.port_value = ip, port
    return cla


class LedgerWriter:
    """The ledger of one scope, written by hand: a table of resources published as versions."""

    def __init__(self, bus: Bus, scope: str = "default") -> None:
        self.bus = bus
        self.scope = scope
        self.table = ResourceTable()
        self.publisher = LedgerPublisher(bus, scope, "bench")
        self.version = 0

    def put(self, type_url: str, message: cluster_pb2.Cluster | endpoint_pb2.ClusterLoadAssignment) -> None:
        name = message.name if isinstance(message, cluster_pb2.Cluster) else message.cluster_name
        self.table.put(type_url, name, message.SerializeToString(deterministic=True))


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _response(version: str, type_url: str, bodies: list[bytes], nonce: str = "1") -> bytes:
    """A serialized DiscoveryResponse, built with protobuf (no xdsbus code on the baseline's side)."""
    response = discovery_pb2.DiscoveryResponse(version_info=version, type_url=type_url, nonce=nonce)
    for body in bodies:
        response.resources.append(any_pb2.Any.FromString(body))
    return response.SerializeToString()


class Clients:
    """A bench/fanout_clients.py subprocess: its JSON lines, by event and version."""

    def __init__(
        self, label: str, target: str, count: int, per_channel: int, log: Path, first_index: int = 0
    ) -> None:
        self.label = label
        self.argv = [
            sys.executable,
            "-m",
            "bench.fanout_clients",
            "--target",
            target,
            "--clients",
            str(count),
            "--streams-per-channel",
            str(per_channel),
            "--first-index",
            str(first_index),
        ]
        self.log = log
        self._stderr = open(log, "ab")  # the child's stderr; closed in stop()
        self.proc: asyncio.subprocess.Process | None = None
        self.versions: dict[str, dict[str, Any]] = {}
        self.events: dict[str, dict[str, Any]] = {}
        self._changed = asyncio.Condition()
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> Clients:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            async with self._changed:
                if event["event"] == "version":
                    self.versions[event["version"]] = event
                else:
                    self.events[event["event"]] = event
                self._changed.notify_all()
        async with self._changed:
            self.events["exit"] = {}
            self._changed.notify_all()

    async def wait(self, what: str, timeout: float, *, version: bool = False) -> dict[str, Any]:
        table = self.versions if version else self.events

        async def until() -> dict[str, Any]:
            async with self._changed:
                while what not in table:
                    if "exit" in self.events:
                        raise RuntimeError(f"{self.label} clients exited; see {self.log}")
                    await self._changed.wait()
                return table[what]

        try:
            return await asyncio.wait_for(until(), timeout)
        except TimeoutError:
            raise TimeoutError(
                f"{self.label} clients: no {what!r} after {timeout}s; see {self.log}"
            ) from None

    async def stop(self) -> dict[str, Any]:
        stats: dict[str, Any] = {}
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                stats = await self.wait("stats", 30)
                await asyncio.wait_for(self.proc.wait(), 30)
            except (TimeoutError, RuntimeError):
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
        self._stderr.close()
        return stats


class ClientGroup:
    """The clients of one server, split over several processes (10,000 channels are more than one
    Python process drives well): their events combined."""

    def __init__(
        self, label: str, target: str, count: int, per_channel: int, tmp: Path, processes: int
    ) -> None:
        self.label = label
        share = -(-count // processes)
        log = tmp / "clients"
        log.mkdir(exist_ok=True)
        self.parts = [
            Clients(label, target, min(share, count - first), per_channel, log / f"{label}-{n}.log", first)
            for n, first in enumerate(range(0, count, share))
        ]

    async def start(self) -> ClientGroup:
        for part in self.parts:
            await part.start()
        return self

    async def wait(self, what: str, timeout: float, *, version: bool = False) -> dict[str, Any]:
        events = await asyncio.gather(*(part.wait(what, timeout, version=version) for part in self.parts))
        if not version:
            return {
                "setup_s": max(e.get("setup_s", 0) for e in events),
                "channels": sum(e.get("channels", 0) for e in events),
            }
        return {
            "first": min(e["first"] for e in events),
            "last": max(e["last"] for e in events),
            "bytes": events[0]["bytes"],
            "count": sum(e["count"] for e in events),
        }

    async def stop(self) -> dict[str, Any]:
        stats = [await part.stop() for part in self.parts]
        repeated: dict[str, int] = {}
        for s in stats:
            for version, times in (s.get("repeated") or {}).items():
                repeated[version] = repeated.get(version, 0) + times
        return {
            "processes": len(stats),
            "other_responses": sum(s.get("other_responses", 0) for s in stats),
            "repeated": repeated,
            "errors": [e for s in stats for e in s.get("errors", [])][:5],
            # A process that reported nothing counts as failed.
            "error_count": sum(s.get("error_count", 1) for s in stats),
        }


def memory(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = round(int(rest.split()[0]) / 1024, 1)
    return out


class EdgeSide:
    """The ledger writer and the edge subprocess."""

    def __init__(self, tmp: Path, nats_url: str) -> None:
        self.xds_port = free_port()
        self.http_port = free_port()
        self.service = Service(
            [
                tool("xdsbus-edge"),
                "--xds-listen",
                f"127.0.0.1:{self.xds_port}",
                "--xds-plaintext",
                "true",
                "--http-listen",
                f"127.0.0.1:{self.http_port}",
                "--debug-listen",
                "127.0.0.1:0",
                "--nats-url",
                nats_url,
            ],
            tmp / "edge.log",
        )

    @property
    def pid(self) -> int:
        assert self.service.proc is not None
        return self.service.proc.pid

    async def ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.service.proc is not None and self.service.proc.poll() is not None:
                raise RuntimeError(f"edge exited:\n{self.service.output()[-3000:]}")
            try:
                if (await http.get("127.0.0.1", self.http_port, "/ready", timeout=5)).status == 200:
                    return
            except (OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        raise TimeoutError(f"edge not ready after {timeout}s:\n{self.service.output()[-3000:]}")

    async def metrics(self) -> str:
        return (await http.get("127.0.0.1", self.http_port, "/metrics", timeout=10)).text


async def _publish_change(writer: LedgerWriter) -> tuple[int, float]:
    """Publish the writer's pending changes as the next version, like the builder: the bodies first,
    then the record. Returns (version, time.monotonic() just before the record was published)."""
    changes = writer.table.commit()
    await store_bodies(writer.bus, (res for _, res in changes.changed))
    parent = writer.publisher.head_version
    writer.version += 1
    record = ledger_pb2.Version(
        version=writer.version,
        parent=parent,
        first_seq=parent + 1,
        last_seq=writer.version,
        time_unix_nano=time.time_ns(),
        translator_version="bench",
        digest=writer.table.digest(),
        digest_algorithm=digests.CURRENT,
        scope=writer.scope,
        resource_count=len(writer.table),
        changed_count=len(changes.changed),
        removed_count=len(changes.removed),
        changes=changes_message(changes),
    )
    data = record.SerializeToString()
    started = time.monotonic()
    ack = await writer.bus.js.publish(ledger_subject(writer.scope), data, stream=LEDGER_STREAM)
    writer.publisher.adopt_head(ack.seq, writer.version)
    return writer.version, started


def _metric_sum(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric = head.split("{", 1)[0]
        if metric != name or not all(f'{k}="{v}"' in head for k, v in labels.items()):
            continue
        total += float(value)
    return total


async def _main(tmp: Path, params: dict[str, tuple[float, str]]) -> dict[str, Any]:
    count = env_int("BENCH_FANOUT_CLIENTS", int(params["BENCH_FANOUT_CLIENTS"][0]))
    per_channel = max(1, env_int("BENCH_FANOUT_STREAMS_PER_CHANNEL", 1))
    default_processes = int(params["BENCH_FANOUT_CLIENT_PROCESSES"][0])
    processes = max(1, env_int("BENCH_FANOUT_CLIENT_PROCESSES", default_processes))
    clusters = env_int("BENCH_FANOUT_CLUSTERS", 100)
    endpoints = env_int("BENCH_FANOUT_ENDPOINTS", 10)
    rounds = env_int("BENCH_FANOUT_ROUNDS", int(params["BENCH_FANOUT_ROUNDS"][0]))
    warmup = env_int("BENCH_FANOUT_WARMUP", int(params["BENCH_FANOUT_WARMUP"][0]))
    settle = env_float("BENCH_FANOUT_SETTLE", params["BENCH_FANOUT_SETTLE"][0])

    nats = NatsServer(tmp / "nats")
    nats.start()
    edge = EdgeSide(tmp, nats.url)
    raw_port = free_port()
    raw: Service | None = None
    sides: list[ClientGroup] = []
    bus = await connect(BusSettings(url=nats.url), name="bench-fanout", attempts=5)
    try:
        writer = LedgerWriter(bus, "default")
        for k in range(clusters):
            writer.put(CLUSTER, _cluster(_cluster_name(k)))
            writer.put(ENDPOINT, _cla(_cluster_name(k), _ips(k, endpoints, 0)))
        first_version, _ = await _publish_change(writer)
        edge.service.start()
        await edge.ready()

        # The raw server answers the handshake with the same resources, pre-serialized.
        clusters_any = [res.body for key, res in writer.table.items() if key.type_url == CLUSTER]
        assignments_any = [res.body for key, res in writer.table.items() if key.type_url == ENDPOINT]
        (tmp / "cds.bin").write_bytes(_response(str(first_version), CLUSTER, clusters_any))
        (tmp / "eds.bin").write_bytes(_response(str(first_version), ENDPOINT, assignments_any))
        raw = Service(
            [
                sys.executable,
                "-m",
                "bench.raw_xds_server",
                "--port",
                str(raw_port),
                "--cds",
                str(tmp / "cds.bin"),
                "--eds",
                str(tmp / "eds.bin"),
            ],
            tmp / "raw.log",
        )
        raw.env["PYTHONPATH"] = str(ROOT)
        raw.start()
        wait_for_port(raw_port)
        assert raw.proc is not None
        raw_pid = raw.proc.pid

        t0 = time.monotonic()
        edge_rss_ready = memory(edge.pid)
        edge_clients = await ClientGroup(
            "edge", f"127.0.0.1:{edge.xds_port}", count, per_channel, tmp, processes
        ).start()
        sides.append(edge_clients)
        edge_ready = await edge_clients.wait("ready", 300)
        _progress(
            f"{count} clients on the edge in {edge_ready['setup_s']} s ({edge_ready['channels']} channels)"
        )
        raw_rss_ready = memory(raw_pid)
        raw_target = f"127.0.0.1:{raw_port}"
        raw_clients = await ClientGroup("raw", raw_target, count, per_channel, tmp, processes).start()
        sides.append(raw_clients)
        raw_ready = await raw_clients.wait("ready", 300)
        _progress(f"{count} clients on the raw server in {raw_ready['setup_s']} s")
        setup_s = time.monotonic() - t0
        await asyncio.sleep(1.0)
        edge_rss_connected, raw_rss_connected = memory(edge.pid), memory(raw_pid)
        metrics_before = await edge.metrics()

        channel = grpc.aio.insecure_channel(f"127.0.0.1:{raw_port}")
        push = channel.unary_unary("/bench.RawFanout/Push")
        edge_s: list[float] = []
        raw_s: list[float] = []
        edge_cpu: list[float] = []
        raw_cpu: list[float] = []
        spreads: dict[str, list[float]] = {"edge": [], "raw": []}
        sizes: dict[str, int] = {}

        async def edge_round(r: int) -> None:
            k = r % clusters
            writer.put(ENDPOINT, _cla(_cluster_name(k), _ips(k, endpoints, r + 1)))
            cpu0 = cpu_seconds(edge.pid)
            version, started = await _publish_change(writer)
            got = await edge_clients.wait(str(version), 60, version=True)
            await asyncio.sleep(settle)
            if r >= warmup:
                edge_s.append(got["last"] - started)
                spreads["edge"].append(got["last"] - got["first"])
                edge_cpu.append(cpu_seconds(edge.pid) - cpu0)
                sizes["edge"] = got["bytes"]

        async def raw_round(r: int) -> None:
            k = r % clusters
            # The version the edge's round r carries (first_version + 1 + r): responses of equal size.
            raw_version = first_version + 1 + r
            body = _cla(_cluster_name(k), _ips(k, endpoints, r + 1))
            data = _response(
                str(raw_version), ENDPOINT, [pack_any(ENDPOINT, body.SerializeToString(deterministic=True))]
            )
            cpu0 = cpu_seconds(raw_pid)
            started = time.monotonic()
            await push(data)
            got = await raw_clients.wait(str(raw_version), 60, version=True)
            await asyncio.sleep(settle)
            if r >= warmup:
                raw_s.append(got["last"] - started)
                spreads["raw"].append(got["last"] - got["first"])
                raw_cpu.append(cpu_seconds(raw_pid) - cpu0)
                sizes["raw"] = got["bytes"]

        for r in range(warmup + rounds):
            # Alternate which server goes first, so drift on a shared machine hits both alike.
            order = (edge_round, raw_round) if r % 2 == 0 else (raw_round, edge_round)
            for step in order:
                await step(r)
            if r >= warmup:
                _progress(
                    f"round {r - warmup + 1}/{rounds}: "
                    f"edge {edge_s[-1] * 1000:.1f} ms, raw {raw_s[-1] * 1000:.1f} ms"
                )
        await channel.close()
        edge_rss_end, raw_rss_end = memory(edge.pid), memory(raw_pid)
        metrics_after = await edge.metrics()
        stats = {side.label: await side.stop() for side in sides}
        sides.clear()
        for label, side_stats in stats.items():
            if side_stats.get("error_count", 1) or side_stats.get("repeated"):
                raise AssertionError(f"{label} clients: failed streams or repeated versions: {side_stats}")
    finally:
        for side in sides:
            await side.stop()
        if raw is not None:
            raw.terminate()
        edge.service.terminate()
        await bus.close()
        nats.stop()

    eds_pushes = _metric_sum(metrics_after, "pilot_xds_pushes", type="eds") - _metric_sum(
        metrics_before, "pilot_xds_pushes", type="eds"
    )
    push_time = _metric_sum(metrics_after, "pilot_xds_push_time_sum", type="eds") - _metric_sum(
        metrics_before, "pilot_xds_push_time_sum", type="eds"
    )
    edge_summary = latency_summary(edge_s)
    raw_summary = latency_summary(raw_s)
    return {
        "value_is": f"p99 ms from a ledger record that changes one endpoint to the last of {count} ADS "
        "clients receiving the EDS response, through a real xdsbus-edge subprocess",
        "baseline_is": f"p99 ms from a trigger RPC to the last of {count} streams receiving the same "
        "pre-serialized DiscoveryResponse from a raw grpc.aio server (no xdsbus code), same run, "
        "rounds interleaved",
        "clients": count,
        "streams_per_channel": per_channel,
        "channels": edge_ready["channels"],
        "client_processes": f"{processes} per server (bench/fanout_clients.py), the edge and the raw "
        "server each in their own process",
        "clusters": clusters,
        "endpoints_per_assignment": endpoints,
        "rounds": rounds,
        "warmup_rounds": warmup,
        "p50_ms": edge_summary["p50_ms"],
        "p99_ms": edge_summary["p99_ms"],
        "edge": edge_summary,
        "raw": raw_summary,
        "p50_ratio": round(edge_summary["p50_ms"] / raw_summary["p50_ms"], 3),
        "edge_first_to_last_p50_ms": round(median(spreads["edge"]) * 1000, 2),
        "raw_first_to_last_p50_ms": round(median(spreads["raw"]) * 1000, 2),
        "edge_cpu_ms_per_round_p50": round(median(edge_cpu) * 1000, 1),
        "raw_cpu_ms_per_round_p50": round(median(raw_cpu) * 1000, 1),
        "edge_eds_pushes_counted": int(eds_pushes),
        # The edge's pilot_xds_push_time per EDS response: building it plus awaiting context.write.
        "edge_push_time_metric_ms_per_response": round(push_time / eds_pushes * 1e3, 3)
        if eds_pushes
        else None,
        "eds_response_bytes": sizes,
        "client_stats": stats,
        "setup_s_not_timed": round(setup_s, 1),
        "client_processes_per_server": processes,
        # MiB: the server process with no client, with every client connected and holding EDS, and
        # after the rounds (VmHWM: the peak).
        "rss_mib": {
            "edge": {"no_client": edge_rss_ready, "connected": edge_rss_connected, "end": edge_rss_end},
            "raw": {"no_client": raw_rss_ready, "connected": raw_rss_connected, "end": raw_rss_end},
        },
    }


def run() -> dict[str, Any]:
    return measure(NAME, PARAMS)


def measure(name: str, defaults: dict[str, tuple[float, str]]) -> dict[str, Any]:
    """Run the fan-out with these defaults and write the result under `name`."""
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-fanout-") as tmp:
        params = asyncio.run(_main(Path(tmp), defaults))
    return write_result(
        name,
        value=params["p99_ms"],
        unit="ms",
        baseline=params["raw"]["p99_ms"],
        budget=BUDGET_RATIO,
        budget_on="ratio",
        # Asserted in _main: a version not received by every client times out, stats are checked.
        checks={"every_client_received_every_change": True, "no_failed_or_repeated_streams": True},
        params=params,
    )
