"""`python -m bench [name ...]`: run every benchmark, or the named ones, and write bench/results/
(or the directory BENCH_RESULTS_DIR names).

The exit status is 1 when a benchmark failed to run or one of its correctness checks failed; a budget
that does not hold is reported (`pass: false`), not an error."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from typing import Any

from bench import flame
from bench.results_io import amend_params

# name -> module; each module has NAME, PARAMS ({env var: (default, meaning)}) and run() -> result.
BENCHMARKS = {
    "builder_full_build": "bench.builder_full_build",
    "builder_fold_rate": "bench.builder_fold_rate",
    "builder_stall": "bench.builder_stall",
    "builder_memory": "bench.builder_memory",
    "replay_1m_recent": "bench.replay_1m_recent",
    "edge_fanout_1000": "bench.edge_fanout_1000",
    "edge_fanout_10000": "bench.edge_fanout_10000",
    "edge_memory": "bench.edge_memory",
    "edge_ack_cost": "bench.edge_ack_cost",
    "propagation": "bench.propagation",
    "ingress_20k": "bench.ingress_20k",
    "cold_load": "bench.cold_load",
    "watcher_publish_rate": "bench.watcher_publish_rate",
    "registry_propagation": "bench.registry_propagation",
    "tls_hosts_change": "bench.tls_hosts_change",
    "edge_startup": "bench.edge_startup",
    "storage_soak": "bench.storage_soak",
    "edge_reconnect_storm": "bench.edge_reconnect_storm",
}


def _module(name: str) -> Any:
    return importlib.import_module(BENCHMARKS[name])


def _run(name: str, with_flame: bool) -> dict[str, Any]:
    """Run one benchmark; with `with_flame`, sampled, and its result says so (`params.flame`)."""
    if not with_flame:
        return _module(name).run()
    with flame.Recording(name) as recording:
        _module(name).run()
    return amend_params(name, flame=recording.params())


def _summary(result: dict[str, Any]) -> str:
    return (
        f"{result['name']}: value {result['value']} {result['unit']}, baseline {result['baseline']} "
        f"{result['unit']}, ratio {result['ratio']}, budget {result['budget_on']} <= {result['budget']}: "
        f"{'pass' if result['pass'] else 'FAIL'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a size parameter (same as the environment variable), e.g. -p BENCH_SERVICES=1000",
    )
    parser.add_argument("--list", action="store_true", help="list benchmarks and their parameters")
    parser.add_argument(
        "--flame",
        action="store_true",
        help=f"write py-spy flame graphs of the builder and edges beside each result (bench/flame.py; "
        f"{flame.RATE_ENV}={flame.DEFAULT_RATE} samples/s)",
    )
    args = parser.parse_args(argv)
    # `make bench BENCH="a b"` passes the names as one word.
    names = [n for arg in args.names for n in arg.replace(",", " ").split()] or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    for item in args.param:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--param {item!r} is not NAME=VALUE")
        os.environ[key] = value
    if args.list:
        for name in names:
            print(name)
            for var, (default, meaning) in _module(name).PARAMS.items():
                print(f"  {var}={os.environ.get(var, default)}  {meaning}")
        return 0
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            result = _run(name, args.flame)
        except Exception as exc:  # report and go on with the other benchmarks
            print(f"!! {name} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        print(json.dumps(result["params"], indent=2), flush=True)
        print(f"{_summary(result)}  ({time.perf_counter() - started:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
