"""edge_reconnect_storm: 1,000 ADS clients reconnecting at once to one edge holding 20k clusters.

Setup: a real nats-server; one ledger version of the builder's own resources (bench/workload.py, as in
edge_memory): `Translator().full_build()` of BENCH_STORM_SERVICES (20k) Services with
BENCH_STORM_ENDPOINTS (10) endpoints each, i.e. 20k Clusters and 20k ClusterLoadAssignments, published
by the builder's LedgerPublisher; one `xdsbus-edge` subprocess with its default limits, following it.
Once the edge is ready its RSS is sampled until stable. Then BENCH_STORM_PROCESSES (2) client
processes (this module run as `--child`) open BENCH_STORM_CLIENTS (1,000) gRPC channels in all, one TCP
connection each, and connect them (TLS handshakes done; RSS sampled until stable again). On one signal
every client opens its ADS SotW stream at once, as proxies do when the replica they were on goes away:
a wildcard CDS request with its node, the response, its ACK; the stream then stays open. A stream the
edge ends with an error status is opened again after a short random backoff, as Envoy does.

value     peak RSS growth of the edge during the storm, bytes: the highest VmRSS sampled every 20 ms and
          the kernel's VmHWM (reset with /proc/<pid>/clear_refs just before the signal), minus the
          stable VmRSS once ready with no client connected.
baseline  bytes of the resources the edge holds: the sum of their serialized `Any` sizes.
          ratio = value / baseline; the budget of issue 13 point 5 is ratio <= 2: serving the storm
          costs at most twice what the edge holds, not one copy of the CDS response per connection.
params    RSS figures and their shares: per connection (connected minus ready), per served stream
          (after the storm minus connected), transient (peak minus after the storm: responses being
          built and written); the CDS response size, the time until every client was served, streams
          refused and retried (by status), xdsbus_edge_response_bytes_in_flight_peak.
          raw_grpc: the same figures for the same storm, same clients and transport, against
          bench/raw_xds_server.py (a grpc.aio server with no xdsbus code answering with the same CDS
          bytes), run right after the edge's; growth_vs_raw_grpc = value / its peak growth. What gRPC
          itself keeps per connection and per stream is the floor under `value`.
Checks: every client received the full CDS (every Cluster of the version, by count and version), from
the edge and from the raw server.

Transport: mTLS as deployed (a CA, the edge's server certificate, one client certificate shared by every
client; xdsbus_dev.harness.certs), every handshake part of the storm; BENCH_STORM_TLS=0 runs plaintext
on loopback instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from bench import workload
from bench.edge_memory import rss_bytes, stable_rss
from bench.results_io import env_float, env_int, write_result
from xdsbus.bus import BusSettings, connect
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import EDGE_SERVER_NAME, XdsPki
from xdsbus_dev.harness.processes import NatsServer, Service, free_port, tool, wait_for_port

NAME = "edge_reconnect_storm"
BUDGET = 2.0
PARAMS = {
    "BENCH_STORM_CLIENTS": (1_000, "ADS clients (one gRPC channel, one TCP connection each)"),
    "BENCH_STORM_PROCESSES": (2, "client processes the clients are spread over"),
    "BENCH_STORM_SERVICES": (20_000, "Services: one Cluster and one ClusterLoadAssignment each"),
    "BENCH_STORM_ENDPOINTS": (10, "endpoints per ClusterLoadAssignment"),
    "BENCH_STORM_TIMEOUT": (600.0, "seconds every client has to be served"),
    "BENCH_STORM_RSS_GUARD_MIB": (8_192, "the run stops (an error) when the edge's RSS passes this"),
    "BENCH_STORM_TLS": (1, "1: mTLS; 0: plaintext on loopback"),
}
ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ROOT = Path(__file__).resolve().parent.parent
CHANNEL_OPTIONS = [
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", -1),
]


def _progress(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


# ---- the client processes ---------------------------------------------------------------------------


def _identity(data: bytes) -> bytes:
    return data


async def _client(
    channel: grpc.aio.Channel, node_id: str, expected: int, held: list[Any], stats: dict[str, Any]
) -> dict[str, Any]:
    """One proxy: CDS wildcard, its response checked and ACKed; the stream is kept in `held`."""
    method = channel.stream_stream(
        ADS_SOTW,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=_identity,
    )
    node = base_pb2.Node(id=node_id, cluster="storm")
    attempts = 0
    while True:
        attempts += 1
        call = method()
        try:
            await call.write(discovery_pb2.DiscoveryRequest(node=node, type_url=CLUSTER))
            data = await call.read()
            if data is grpc.aio.EOF:
                raise RuntimeError("stream ended without a response")
            response = discovery_pb2.DiscoveryResponse.FromString(data)
            if response.type_url != CLUSTER or len(response.resources) != expected:
                return {"ok": False, "error": f"{len(response.resources)} of {expected} clusters"}
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    type_url=CLUSTER, version_info=response.version_info, response_nonce=response.nonce
                )
            )
            held.append(call)
            return {
                "ok": True,
                "attempts": attempts,
                "bytes": len(data),
                "version": response.version_info,
                "at": time.monotonic(),
            }
        except grpc.aio.AioRpcError as exc:
            code = exc.code().name
            stats[code] = stats.get(code, 0) + 1
            call.cancel()
            if attempts >= 50:
                return {"ok": False, "error": f"{code}: {exc.details()}"}
            await asyncio.sleep(random.uniform(0.1, 1.0))


def _channel(target: str, pki: Path | None) -> grpc.aio.Channel:
    if pki is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS)
    files = XdsPki(pki)
    creds = grpc.ssl_channel_credentials(
        root_certificates=files.ca_file.read_bytes(),
        private_key=files.envoy_key.read_bytes(),
        certificate_chain=files.envoy_cert.read_bytes(),
    )
    options = [*CHANNEL_OPTIONS, ("grpc.ssl_target_name_override", EDGE_SERVER_NAME)]
    return grpc.aio.secure_channel(target, creds, options=options)


async def _child(target: str, count: int, expected: int, prefix: str, pki: Path | None) -> None:
    loop = asyncio.get_running_loop()
    channels = [_channel(target, pki) for _ in range(count)]
    held: list[Any] = []
    errors: dict[str, Any] = {}

    def emit(**event: Any) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    # Connected (TCP and TLS) before the signal, so every request arrives at once.
    await asyncio.gather(*(ch.channel_ready() for ch in channels))
    emit(event="ready")
    await loop.run_in_executor(None, sys.stdin.readline)
    started = time.monotonic()
    results = await asyncio.gather(
        *(_client(ch, f"{prefix}-{i}", expected, held, errors) for i, ch in enumerate(channels))
    )
    served = [r for r in results if r["ok"]]
    emit(
        event="served",
        started=started,
        served=len(served),
        failed=[r["error"] for r in results if not r["ok"]][:10],
        failed_count=len(results) - len(served),
        last=max((r["at"] for r in served), default=started),
        retries=sum(r["attempts"] - 1 for r in served),
        statuses=errors,
        bytes=max((r["bytes"] for r in served), default=0),
        versions=sorted({r["version"] for r in served}),
    )
    await loop.run_in_executor(None, sys.stdin.readline)
    for call in held:
        call.cancel()
    for ch in channels:
        await ch.close()


class _Clients:
    """One client process and its JSON lines."""

    def __init__(
        self, target: str, count: int, expected: int, prefix: str, pki: Path | None, log: Path
    ) -> None:
        self.argv = [
            sys.executable,
            "-m",
            "bench.edge_reconnect_storm",
            "--child",
            "--target",
            target,
            "--clients",
            str(count),
            "--expect",
            str(expected),
            "--prefix",
            prefix,
            *(["--pki", str(pki)] if pki is not None else []),
        ]
        self.log = log
        self._stderr = open(log, "ab")  # the child's stderr; closed in stop()
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._stderr,
        )

    async def event(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        if not line:
            raise RuntimeError(f"client process exited; see {self.log}")
        event: dict[str, Any] = json.loads(line)
        return event

    def signal(self) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._stderr.close()


# ---- the run ----------------------------------------------------------------------------------------


def _edge(tmp: Path, nats_url: str, pki: XdsPki | None) -> tuple[Service, int, int]:
    xds_port, http_port = free_port(), free_port()
    service = Service(
        [
            tool("xdsbus-edge"),
            "--xds-listen",
            f"127.0.0.1:{xds_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
            "--debug-listen",
            "127.0.0.1:0",
            "--nats-url",
            nats_url,
            *(pki.edge_flags() if pki is not None else ["--xds-plaintext", "true"]),
        ],
        tmp / "edge.log",
    )
    # An edge from another source tree (the code before a change, for a figure to compare with).
    other = os.environ.get("BENCH_STORM_EDGE_SRC")
    if other:
        service.env["PYTHONPATH"] = other
    return service, xds_port, http_port


async def _ready(service: Service, http_port: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.proc is not None and service.proc.poll() is not None:
            raise RuntimeError(f"edge exited:\n{service.output()[-3000:]}")
        try:
            if (await http.get("127.0.0.1", http_port, "/ready", timeout=5)).status == 200:
                return
        except (OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"edge not ready after {timeout}s:\n{service.output()[-3000:]}")


def _reset_peak(pid: int) -> None:
    """Reset the kernel's VmHWM of a process (Linux: write 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def _metric_max(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rpartition(" ")[2])
    return None


@dataclass
class _Storm:
    """RSS of one server through one storm (bytes) and what the clients reported."""

    ready: int
    connected: int
    peak: int
    after: int
    storm_s: float
    events: list[dict[str, Any]]

    def figures(self, count: int, resource_bytes: int) -> dict[str, Any]:
        """What the storm's memory is made of: each client's connection (TCP, TLS, HTTP/2) before any
        request; its stream once served (gRPC call, stream state); the transient rest is responses
        being built and written, what the edge's --max-response-bytes bounds."""
        mib = 2**20
        return {
            "peak_growth_bytes": self.peak - self.ready,
            "rss_ready_mib": round(self.ready / mib, 1),
            "rss_connected_mib": round(self.connected / mib, 1),
            "per_connection_bytes": round((self.connected - self.ready) / count),
            "per_served_stream_bytes": round((self.after - self.connected) / count),
            "transient_bytes": self.peak - self.after,
            "transient_ratio": round((self.peak - self.after) / resource_bytes, 3),
            "rss_peak_mib": round(self.peak / mib, 1),
            "rss_after_storm_mib": round(self.after / mib, 1),
            "rss_after_storm_growth_ratio": round((self.after - self.ready) / resource_bytes, 3),
            "storm_s": round(self.storm_s, 2),
        }


async def _storm(
    server: Service, target: str, *, clusters: int, pki: Path | None, tmp: Path, label: str
) -> _Storm:
    """Connect the clients to `server` at `target`, then let every one open its stream at once;
    RSS sampled every 20 ms. Raises when a client was not served or the RSS guard was passed."""
    count = env_int("BENCH_STORM_CLIENTS", 1_000)
    processes = max(1, min(env_int("BENCH_STORM_PROCESSES", 2), count))
    timeout = env_float("BENCH_STORM_TIMEOUT", 600.0)
    guard = env_int("BENCH_STORM_RSS_GUARD_MIB", 8_192) * 2**20
    assert server.proc is not None
    pid = server.proc.pid
    ready = await stable_rss(pid)
    _progress(f"{label} ready; RSS {ready['VmRSS'] / 2**20:.1f} MiB")
    sides: list[_Clients] = []
    try:
        per = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
        for i, n in enumerate(per):
            side = _Clients(target, n, clusters, f"storm-{i}", pki, tmp / f"{label}-clients-{i}.log")
            await side.start()
            sides.append(side)
        for side in sides:
            await side.event(300)
        connected = await stable_rss(pid)
        # The peak is the storm's: forget the one of loading the ledger (Linux: "5" resets VmHWM).
        _reset_peak(pid)
        peak = rss_bytes(pid)["VmRSS"]
        stop_sampling = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not stop_sampling.is_set():
                rss = rss_bytes(pid)["VmRSS"]
                peak = max(peak, rss)
                if rss > guard:
                    server.kill9()
                    raise RuntimeError(f"{label} RSS {rss / 2**20:.0f} MiB passed the guard; stopped it")
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        started = time.monotonic()
        for side in sides:
            side.signal()
        served = asyncio.ensure_future(asyncio.gather(*(side.event(timeout) for side in sides)))
        done, _ = await asyncio.wait({sampler, served}, return_when=asyncio.FIRST_COMPLETED)
        if sampler in done:
            served.cancel()
            sampler.result()
        events: list[dict[str, Any]] = served.result()
        stop_sampling.set()
        await sampler
        storm_s = max(e["last"] for e in events) - started
        peak = max(peak, rss_bytes(pid)["VmHWM"])
        after = await stable_rss(pid)
        _progress(
            f"{label}: {sum(e['served'] for e in events)} of {count} served in {storm_s:.1f} s; peak RSS "
            f"{peak / 2**20:.1f} MiB, after {after['VmRSS'] / 2**20:.1f} MiB"
        )
    finally:
        for side in sides:
            await side.stop()
    served_count = sum(e["served"] for e in events)
    if served_count != count:
        failed = [f for e in events for f in e["failed"]]
        raise AssertionError(f"{label}: {served_count} of {count} clients served the full CDS: {failed[:5]}")
    versions = {v for e in events for v in e["versions"]}
    if versions != {"1"}:
        raise AssertionError(f"{label}: clients received versions {versions}, expected only 1")
    return _Storm(ready["VmRSS"], connected["VmRSS"], peak, after["VmRSS"], storm_s, events)


def _raw_server(tmp: Path, table: Any, pki: XdsPki | None) -> tuple[Service, int]:
    """The baseline: bench.raw_xds_server answering every stream's CDS request with the same version's
    clusters, over the same transport; no xdsbus code in the process."""
    clusters = [any_pb2.Any.FromString(res.body) for key, res in table.items() if key.type_url == CLUSTER]
    cds = discovery_pb2.DiscoveryResponse(version_info="1", type_url=CLUSTER, nonce="1", resources=clusters)
    (tmp / "cds.bin").write_bytes(cds.SerializeToString())
    (tmp / "eds.bin").write_bytes(discovery_pb2.DiscoveryResponse(version_info="1").SerializeToString())
    port = free_port()
    argv = [sys.executable, "-m", "bench.raw_xds_server", "--port", str(port)]
    argv += ["--cds", str(tmp / "cds.bin"), "--eds", str(tmp / "eds.bin")]
    if pki is not None:
        argv += [
            "--tls-cert",
            str(pki.edge_cert),
            "--tls-key",
            str(pki.edge_key),
            "--client-ca",
            str(pki.ca_file),
        ]
    service = Service(argv, tmp / "raw-server.log")
    service.env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), service.env.get("PYTHONPATH")]))
    return service, port


async def _main(tmp: Path) -> dict[str, Any]:
    count = env_int("BENCH_STORM_CLIENTS", 1_000)
    services = env_int("BENCH_STORM_SERVICES", 20_000)
    endpoints = env_int("BENCH_STORM_ENDPOINTS", 10)
    pki = XdsPki(tmp / "pki").create() if env_int("BENCH_STORM_TLS", 1) else None
    pki_dir = pki.directory if pki is not None else None

    translator = Translator()
    translator.full_build(workload.folded_state(services, endpoints, 0))
    table = translator.table
    changes = table.commit()
    resource_bytes = sum(len(res.body) for _, res in table.items())
    clusters = sum(1 for key, _ in table.items() if key.type_url == CLUSTER)

    nats = NatsServer(tmp / "nats")
    nats.start()
    bus = await connect(BusSettings(url=nats.url), name="bench-storm", attempts=5)
    edge, xds_port, http_port = _edge(tmp, nats.url, pki)
    try:
        publisher = LedgerPublisher(bus, "default", translator.settings.describe())
        await publisher.publish(
            version=1, first_seq=1, changes=changes, digest=table.digest(), resource_count=len(table)
        )
        edge.start()
        await _ready(edge, http_port)
        _progress(f"edge holds {len(table)} resources")
        storm = await _storm(
            edge, f"127.0.0.1:{xds_port}", clusters=clusters, pki=pki_dir, tmp=tmp, label="edge"
        )
        metrics = (await http.get("127.0.0.1", http_port, "/metrics", timeout=10)).text
    finally:
        edge.terminate()
        await bus.close()
        nats.stop()

    raw, raw_port = _raw_server(tmp, table, pki)
    try:
        raw.start()
        wait_for_port(raw_port, timeout=30)
        raw_storm = await _storm(
            raw, f"127.0.0.1:{raw_port}", clusters=clusters, pki=pki_dir, tmp=tmp, label="raw grpc.aio server"
        )
    finally:
        raw.terminate()

    statuses: dict[str, int] = {}
    for e in storm.events:
        for code, n in e["statuses"].items():
            statuses[code] = statuses.get(code, 0) + n
    cds_bytes = max(e["bytes"] for e in storm.events)
    figures = storm.figures(count, resource_bytes)
    raw_figures = raw_storm.figures(count, resource_bytes)
    return {
        "value_is": "peak edge RSS growth during the storm, bytes: highest VmRSS (sampled every 20 ms, "
        "and VmHWM) minus the stable VmRSS when ready with no client",
        "baseline_is": "sum of the serialized Any sizes of the resources the edge holds",
        "clients": count,
        "client_processes": max(1, min(env_int("BENCH_STORM_PROCESSES", 2), count)),
        "services": services,
        "endpoints_per_service": endpoints,
        "resources": len(table),
        "clusters": clusters,
        "resource_bytes": resource_bytes,
        "cds_response_bytes": cds_bytes,
        "cds_bytes_all_clients": cds_bytes * count,
        **figures,
        "retries": sum(e["retries"] for e in storm.events),
        "client_statuses": statuses,
        "edge_response_bytes_in_flight_peak": _metric_max(
            metrics, "xdsbus_edge_response_bytes_in_flight_peak"
        ),
        # The same storm against a grpc.aio server with no xdsbus code (bench/raw_xds_server.py), same
        # transport and clients: what gRPC itself costs per connection and stream, the floor of `value`.
        "raw_grpc": raw_figures,
        "growth_vs_raw_grpc": round(
            figures["peak_growth_bytes"] / max(1, raw_figures["peak_growth_bytes"]), 3
        ),
        "transport": "mTLS" if pki is not None else "plaintext gRPC on loopback",
        "edge_source": os.environ.get("BENCH_STORM_EDGE_SRC") or "this tree",
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-storm-") as tmp:
        params = asyncio.run(_main(Path(tmp)))
    return write_result(
        NAME,
        value=params["peak_growth_bytes"],
        unit="bytes",
        baseline=params["resource_bytes"],
        budget=BUDGET,
        budget_on="ratio",
        # Asserted in _main: every client got every cluster of the version.
        checks={"every_client_received_the_full_cds": True},
        params=params,
    )


def _child_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.edge_reconnect_storm --child")
    p.add_argument("--child", action="store_true")
    p.add_argument("--target", required=True)
    p.add_argument("--clients", type=int, required=True)
    p.add_argument("--expect", type=int, required=True)
    p.add_argument("--prefix", default="storm")
    p.add_argument("--pki", type=Path, help="directory of the xDS PKI (xdsbus_dev.harness.certs.XdsPki)")
    args = p.parse_args(argv)
    asyncio.run(_child(args.target, args.clients, args.expect, args.prefix, args.pki))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
