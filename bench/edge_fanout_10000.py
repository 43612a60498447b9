"""edge_fanout_10000: edge_fanout_1000 (see there for the setup, value, baseline and checks) with 10,000
ADS clients on one edge, each on its own gRPC channel (one TCP connection), split over
BENCH_FANOUT_CLIENT_PROCESSES (4) client processes per server: one Python process does not drive 10,000
channels well. Fewer rounds (BENCH_FANOUT_ROUNDS, 10) with a longer settle (BENCH_FANOUT_SETTLE, 1 s:
10,000 ACKs and the proxy-status writes drain between rounds).

value     p99 ms from the ledger record to the last of the 10,000 clients receiving the EDS response.
baseline  the same for the raw grpc.aio server, same run, rounds interleaved; budget ratio <= 1.1.
params    as edge_fanout_1000, with the RSS of the edge and of the raw server (MiB) with no client,
          with every client connected and holding EDS, and after the rounds (VmHWM: the peak).
The machine needs about 2 file descriptors per client in the server process and in the clients'
(`ulimit -n` of 20,000 holds); 2 CPUs are shared by both servers and eight client processes.
"""

from __future__ import annotations

from typing import Any

from bench import edge_fanout_1000

NAME = "edge_fanout_10000"
PARAMS = {
    **edge_fanout_1000.PARAMS,
    "BENCH_FANOUT_CLIENTS": (10_000, "ADS SotW clients (streams)"),
    "BENCH_FANOUT_CLIENT_PROCESSES": (4, "client processes per server, the clients split among them"),
    "BENCH_FANOUT_ROUNDS": (10, "timed changes per server (after BENCH_FANOUT_WARMUP)"),
    "BENCH_FANOUT_WARMUP": (2, "untimed changes per server first"),
    "BENCH_FANOUT_SETTLE": (1.0, "seconds of quiet between rounds (ACKs drained)"),
}


def run() -> dict[str, Any]:
    return edge_fanout_1000.measure(NAME, PARAMS)
