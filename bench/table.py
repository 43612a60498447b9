"""`python -m bench.table`: the "Latest figures" table of bench/README.md, from the results in
bench/results/ (or BENCH_RESULTS_DIR), written between the README's two markers. `make bench` runs it
after the benchmarks, so the committed table is the figures of the last full run and says where and when
they were taken."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bench.__main__ import BENCHMARKS
from bench.results_io import results_dir

README = Path(__file__).resolve().parent / "README.md"
BEGIN = "<!-- latest-figures: written by `python -m bench.table` from bench/results/*.json; edit there -->"
END = "<!-- /latest-figures -->"
# Results that are not in BENCHMARKS (their own commands), listed after them when present.
OTHERS = ("gateway_api_conformance", "chaos")
# The params that say how large a run was, in the order they are shown; the first three present are.
SIZE_KEYS = (
    "services",
    "ingresses",
    "instances",
    "hosts",
    "clients",
    "clusters",
    "objects",
    "resources",
    "events",
    "changes",
)
SIZE_SHOWN = 3

# How to read each benchmark's figure and its flame graphs (bench/flame.py names the graphs).
NOTES: dict[str, str] = {
    "builder_full_build": "ratio is the translator's cost over upb building the same bytes from lists; "
    "bench.svg is the whole run, the workload's setup included: look under `full_build`",
    "builder_fold_rate": "one endpoint change at 10k Services over one at 1k: near 1 means the cost follows "
    "the change; bench.svg: `fold_message`, `update`, `commit`, `digest` are the timed part",
    "builder_stall": "longest event-loop gap while a checkpoint is taken; bench.svg: look for work done "
    "outside `await` in the checkpoint's encode",
    "replay_1m_recent": "slowest `replay_to()` within the newest checkpoints' span against 1 s; any version "
    "in the window against 10 s in params.window; bench.svg includes publishing the log and the builder, "
    "the replays are under `replay_to`",
    "edge_fanout_1000": "p99 to the last of 1,000 clients over a raw grpc.aio server's; edge.svg: the "
    "edge's share per push (ledger read, encode, the streams' writes)",
    "edge_memory": "RSS growth over the resources' bytes; edge.svg shows where the load's CPU went, not "
    "memory",
    "tls_hosts_change": "one Ingress change with 5k TLS hosts over the same without TLS; bench.svg: the "
    "listener's filter chains under `update`",
    "edge_startup": "start-up with 10,000 versions over 10: near 1 means a base bounds it; one graph per "
    "edge started (edge, edge-2, ...), in the order the benchmark starts them",
    "storage_soak": "stream bytes after 200k changes over one window's; builder.svg: folding, "
    "publishing and the history sweep",
    "propagation": "p99 event → Envoy serving, against 50 ms; builder.svg and edge.svg cover the whole "
    "run (10k Services loaded first, then the changes and the burst)",
    "ingress_20k": "p99 Ingress creation → Envoy serving among 20k, the builder's default route table "
    "(--route-tables auto: 64 tables at 20k); baseline: Envoy alone applying the same addition from files "
    "with one table; builder/edge are the 100-Ingress reference stack when it runs, builder-2/edge-2 "
    "the 20k one",
    "cold_load": "s from the watcher's start to Envoy serving 20k hosts; builder.svg: folding and the "
    "full build of the load, edge.svg: serving it, watch-k8s.svg: listing and publishing it",
    "watcher_publish_rate": "µs per event of watch-k8s alone listing 60k objects into the log, against "
    "50 µs (20k events/s); baseline: nats-py's own pipelined publish of the same messages; watch-k8s.svg: "
    "lists, normalization and publishing",
    "registry_propagation": "p99 registry event → Envoy, worst of Nacos/Consul, against 50 ms; the "
    "graphs cover the three registries' runs together",
    "edge_reconnect_storm": "peak RSS growth of the edge in a storm of 1,000 mTLS clients over the bytes "
    "it holds; edge.svg: the storm's CPU (TLS, encode, writes)",
    "gateway_api_conformance": "failed conformance cases (value) of those run (baseline); no graphs",
    "chaos": "events lost through the cluster's faults; no graphs",
}


def _number(value: float) -> str:
    if value == int(value) or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    return f"{_number(value)} {unit}"


def _size(params: dict[str, Any]) -> str:
    shown = [(key, params[key]) for key in SIZE_KEYS if isinstance(params.get(key), int | float)]
    return ", ".join(f"{_number(value)} {key}" for key, value in shown[:SIZE_SHOWN]) or "–"


def _machine(params: dict[str, Any]) -> str:
    machine = params.get("machine") or {}
    parts = []
    if "cpus" in machine:
        parts.append(f"{machine['cpus']} CPUs")
    if "python" in machine:
        parts.append(f"Python {machine['python']}")
    if "loadavg_1m_at_end" in machine:
        parts.append(f"load {machine['loadavg_1m_at_end']}")
    return ", ".join(parts) or "–"


def _graphs(params: dict[str, Any]) -> str:
    flame = params.get("flame")
    if not flame:
        return "not sampled"
    if flame.get("why"):
        return f"none: {flame['why']}"
    files = [f"`{graph['file']}`" for graph in flame.get("graphs", []) if graph.get("file")]
    missing = [f"{graph['role']}: {graph['why']}" for graph in flame.get("graphs", []) if graph.get("why")]
    text = " ".join(files) or "none"
    text += f" ({flame['rate_hz']}/s)" if files else ""
    return text + ("; missing " + "; ".join(missing) if missing else "")


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def row(name: str, result: dict[str, Any] | None) -> str:
    """One line of the table: `result` as written by results_io.write_result, or None when not run."""
    note = NOTES.get(name, "see the module's docstring")
    if result is None:
        cells = [f"`{name}`", "not measured", *["–"] * 8, note]
        return "| " + " | ".join(_cell(c) for c in cells) + " |"
    params: dict[str, Any] = result.get("params") or {}
    unit = str(result.get("unit", ""))
    budget_on = result.get("budget_on", "value")
    budget = result.get("budget")
    budget_text = "–" if budget is None else (
        _quantity(budget, unit) if budget_on == "value" else f"ratio ≤ {_number(budget)}"
    )  # fmt: skip
    ratio = result.get("ratio")
    cells = [
        f"`{name}`",
        _quantity(result.get("value"), unit),
        _quantity(result.get("baseline"), unit),
        "–" if ratio is None else _number(ratio),
        budget_text,
        "yes" if result.get("pass") else "**no**",
        _size(params),
        str(result.get("when", ""))[:10] or "–",
        _machine(params),
        _graphs(params),
        note,
    ]
    return "| " + " | ".join(_cell(c) for c in cells) + " |"


HEADER = (
    "| benchmark | value | baseline | ratio | budget | pass | size | date | machine | flame graphs | "
    "how to read |\n|---|---|---|---|---|---|---|---|---|---|---|"
)


def table(results: dict[str, dict[str, Any]]) -> str:
    """The table: every benchmark of bench/__main__.py (marked when not measured), then OTHERS present."""
    names: Iterable[str] = [*BENCHMARKS, *(name for name in OTHERS if name in results)]
    return "\n".join([HEADER, *(row(name, results.get(name)) for name in names)])


def read_results(directory: Path) -> dict[str, dict[str, Any]]:
    """Every `<name>.json` of `directory` that has a result's fields, by name."""
    results = {}
    for path in sorted(directory.glob("*.json")):
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(result, dict) and "value" in result and "params" in result:
            results[path.stem] = result
    return results


def replace_between_markers(text: str, body: str) -> str:
    """`text` with what lies between BEGIN and END replaced by `body`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the markers {BEGIN!r} and {END!r} are missing or out of order")
    return text[: start + len(BEGIN)] + "\n" + body + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.table", description=__doc__)
    parser.add_argument(
        "--readme", type=Path, default=README, help="the file to write (default: %(default)s)"
    )
    parser.add_argument(
        "--results", type=Path, default=None, help="results directory (default: bench/results)"
    )
    args = parser.parse_args(argv)
    body = table(read_results(args.results or results_dir()))
    readme: Path = args.readme
    readme.write_text(replace_between_markers(readme.read_text(), body))
    print(f"{readme}: latest figures of {body.count(chr(10)) - 1} benchmarks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
