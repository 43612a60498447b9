"""The proxies of edge_fanout_1000: N ADS SotW clients in one process, each on its own gRPC channel.

    python -m bench.fanout_clients --target 127.0.0.1:18000 --clients 1000

Every client behaves like Envoy's ADS stream for clusters and endpoints: a wildcard CDS request (with
its node), the ACK of the CDS response, an EDS request naming every ClusterLoadAssignment the clusters
point to, and an ACK of every response after that. Nothing here knows whether the server is an xdsbus
edge or the raw baseline server: both are measured by the same code.

Output (stdout, one JSON object per line):
  {"event": "ready", "clients": N, "channels": C, "setup_s": S}   every client holds CDS and EDS
  {"event": "version", "version": V, "count": N, "first": T, "last": T, "bytes": B, "responses": R}
      every client received an EDS response with version_info V; times are time.monotonic() (one
      CLOCK_MONOTONIC for every process of the machine) of the first and the last client's receipt,
      B the size of the last response, R the EDS responses received for V (N if nothing was resent)
  {"event": "stats", ...}                                           on stdin EOF, before exiting
Diagnostics go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.contract.wire import field

ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

CHANNEL_OPTIONS = [
    # One TCP connection per channel: without a local subchannel pool, channels to the same target
    # with the same arguments share one connection.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _identity(data: bytes) -> bytes:
    return data


class Fanout:
    def __init__(self, count: int) -> None:
        self.count = count
        self.arrivals: dict[str, list[float]] = {}
        self.sizes: dict[str, int] = {}
        self.reported: set[str] = set()
        self.ready = 0
        self.other = 0
        self.errors: list[str] = []
        # EDS request names per CDS version: every client gets the same clusters, parse them once.
        self._eds_names: dict[bytes, bytes] = {}

    def emit(self, **event: Any) -> None:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()

    def eds_names(self, cds: discovery_pb2.DiscoveryResponse) -> bytes:
        """The `resource_names` fields of the EDS request that follows this CDS response."""
        key = cds.version_info.encode()
        blob = self._eds_names.get(key)
        if blob is None:
            names = []
            for any_ in cds.resources:
                cluster = cluster_pb2.Cluster()
                any_.Unpack(cluster)
                if cluster.type == cluster_pb2.Cluster.EDS:
                    names.append(cluster.eds_cluster_config.service_name or cluster.name)
            blob = self._eds_names[key] = b"".join(field(3, n.encode()) for n in sorted(names))
        return blob

    def arrived(self, version: str, at: float, size: int) -> None:
        times = self.arrivals.setdefault(version, [])
        times.append(at)
        self.sizes[version] = size
        if len(times) >= self.count and version not in self.reported:
            self.reported.add(version)
            self.emit(
                event="version",
                version=version,
                count=len(times),
                first=min(times),
                last=max(times),
                bytes=size,
                responses=len(times),
            )

    async def client(self, index: int, channel: grpc.aio.Channel, ready: asyncio.Event) -> None:
        node = base_pb2.Node(id=f"bench-proxy-{index:05d}", cluster="bench-gateways")
        call = channel.stream_stream(
            ADS_SOTW, request_serializer=_identity, response_deserializer=_identity
        )()
        cds_type = field(4, CLUSTER.encode())
        eds_type = field(4, ENDPOINT.encode())
        await call.write(field(2, node.SerializeToString()) + cds_type)
        eds_names = b""
        eds_requested = False
        holding_eds = False
        try:
            while True:
                data = await call.read()
                at = time.monotonic()
                if data is grpc.aio.EOF:
                    raise ConnectionError(f"client {index}: stream ended")
                response = discovery_pb2.DiscoveryResponse.FromString(data)
                ack_head = field(1, response.version_info.encode()) if response.version_info else b""
                nonce = field(5, response.nonce.encode())
                if response.type_url == CLUSTER:
                    eds_names = self.eds_names(response)
                    await call.write(ack_head + cds_type + nonce)
                    if not eds_requested:
                        eds_requested = True
                        await call.write(eds_names + eds_type)
                elif response.type_url == ENDPOINT:
                    await call.write(ack_head + eds_names + eds_type + nonce)
                    if not holding_eds:
                        holding_eds = True
                        self.ready += 1
                        ready.set()
                    else:
                        self.arrived(response.version_info, at, len(data))
                else:
                    self.other += 1
        except asyncio.CancelledError:
            call.cancel()
            raise
        except Exception as exc:  # reported; the parent decides
            self.errors.append(f"{type(exc).__name__}: {exc}")
            print(f"client {index} failed: {exc!r}", file=sys.stderr, flush=True)


async def _stdin_closed() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--target", required=True)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--streams-per-channel", type=int, default=1)
    p.add_argument("--connect-concurrency", type=int, default=50)
    # Node ids are unique across the client processes of one server.
    p.add_argument("--first-index", type=int, default=0, help="index (node id) of the first client")
    args = p.parse_args(argv)

    fan = Fanout(args.clients)
    started = time.monotonic()
    channels: list[grpc.aio.Channel] = []
    tasks: list[asyncio.Task[None]] = []
    gate = asyncio.Semaphore(args.connect_concurrency)

    async def start_one(i: int) -> None:
        # At most --connect-concurrency handshakes in flight: a slot is held until the client holds EDS.
        async with gate:
            ready = asyncio.Event()
            channel = channels[i // args.streams_per_channel]
            tasks.append(asyncio.create_task(fan.client(args.first_index + i, channel, ready)))
            await asyncio.wait_for(ready.wait(), timeout=60)

    for _ in range(0, args.clients, args.streams_per_channel):
        channels.append(grpc.aio.insecure_channel(args.target, options=CHANNEL_OPTIONS))
    try:
        await asyncio.gather(*(start_one(i) for i in range(args.clients)))
    except TimeoutError:
        print(f"only {fan.ready} of {args.clients} clients ready; errors {fan.errors[:3]}", file=sys.stderr)
        return 2
    fan.emit(
        event="ready",
        clients=args.clients,
        channels=len(channels),
        setup_s=round(time.monotonic() - started, 2),
    )
    await _stdin_closed()
    fan.emit(
        event="stats",
        other_responses=fan.other,
        # Versions some client received more than once (a push resent or split): should be empty.
        repeated={v: len(t) - args.clients for v, t in fan.arrivals.items() if len(t) > args.clients},
        errors=fan.errors[:5],
        error_count=len(fan.errors),
    )
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for channel in channels:
        await channel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
