"""Every benchmark of bench/ runs at a small size, with its correctness checks, so that none can rot.

Each runs as `python -m bench NAME -p PARAM=VALUE ...` (the command `make bench` runs) into a temporary
results directory (BENCH_RESULTS_DIR), and its result must have the form of docs/design.md §8 with the
budget judged on the field `budget_on` names. The budget itself is not asserted: timing is not for tests,
and at these sizes the figures mean nothing. What is asserted is that the benchmark's correctness checks
ran and held (byte equality with its baseline, digests, Envoy serving the change...): a benchmark raises,
and exits 1, when one fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import bench
from bench.__main__ import BENCHMARKS
from bench.results_io import RESULTS_DIR_ENV, write_result

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"name", "value", "unit", "baseline", "ratio", "budget", "budget_on", "pass", "params", "when"}
RUN_TIMEOUT_S = 240

# The small size of each benchmark, and whether it starts Envoy (then marked slow, and one of its
# checks must be about Envoy).
SMALL: dict[str, dict[str, str]] = {
    "builder_full_build": {
        "BENCH_SERVICES": "50",
        "BENCH_ENDPOINTS": "3",
        "BENCH_INGRESSES": "50",
        "BENCH_REPEAT": "1",
    },
    "builder_fold_rate": {
        "BENCH_SERVICES": "50",
        "BENCH_SERVICES_SMALL": "10",
        "BENCH_ENDPOINTS": "3",
        "BENCH_FOLD_EVENTS": "200",
        "BENCH_FOLD_BATCH": "20",
        "BENCH_CHANGES": "20",
    },
    "builder_memory": {
        "BENCH_MEMORY_SERVICES": "50",
        "BENCH_MEMORY_ENDPOINTS": "3",
        "BENCH_MEMORY_INGRESSES": "50",
    },
    "builder_stall": {"BENCH_STALL_OBJECTS": "300", "BENCH_STALL_ENDPOINTS": "3", "BENCH_STALL_REPEAT": "1"},
    "replay_1m_recent": {
        "BENCH_REPLAY_EVENTS": "3000",
        "BENCH_REPLAY_SERVICES": "20",
        "BENCH_REPLAY_INGRESSES": "20",
        "BENCH_REPLAY_ENDPOINTS": "3",
        "BENCH_REPLAY_CHECKPOINT_EVENTS": "300",
        "BENCH_REPLAY_CHECKPOINTS_KEEP": "2",
        "BENCH_REPLAY_CHECKPOINTS_SPAN": "1000",
        "BENCH_REPLAY_DEBOUNCE_MAX": "0.01",
        "BENCH_REPLAY_TARGETS": "3",
        "BENCH_REPLAY_SCRATCH": "1",
    },
    "edge_fanout_1000": {
        "BENCH_FANOUT_CLIENTS": "20",
        "BENCH_FANOUT_CLUSTERS": "5",
        "BENCH_FANOUT_ENDPOINTS": "3",
        "BENCH_FANOUT_ROUNDS": "3",
        "BENCH_FANOUT_WARMUP": "1",
        "BENCH_FANOUT_SETTLE": "0.05",
    },
    "edge_fanout_10000": {
        "BENCH_FANOUT_CLIENTS": "30",
        "BENCH_FANOUT_CLIENT_PROCESSES": "2",
        "BENCH_FANOUT_CLUSTERS": "5",
        "BENCH_FANOUT_ENDPOINTS": "3",
        "BENCH_FANOUT_ROUNDS": "2",
        "BENCH_FANOUT_WARMUP": "1",
        "BENCH_FANOUT_SETTLE": "0.05",
    },
    "edge_memory": {
        "BENCH_MEMORY_SERVICES": "50",
        "BENCH_MEMORY_ENDPOINTS": "3",
        "BENCH_MEMORY_INGRESSES": "50",
        "BENCH_MEMORY_RSS_WINDOW": "0.5",
    },
    "edge_ack_cost": {
        "BENCH_ACK_NAMES": "200",
        "BENCH_ACK_NAMES_SMALL": "5",
        "BENCH_ACK_ROUNDS": "10",
        "BENCH_ACK_WARMUP": "2",
    },
    "tls_hosts_change": {"BENCH_HOSTS": "20", "BENCH_REPEAT": "3"},
    "edge_reconnect_storm": {
        "BENCH_STORM_CLIENTS": "20",
        "BENCH_STORM_PROCESSES": "2",
        "BENCH_STORM_SERVICES": "100",
        "BENCH_STORM_ENDPOINTS": "2",
        "BENCH_STORM_TIMEOUT": "60",
    },
    "edge_startup": {
        "BENCH_STARTUP_RESOURCES": "200",
        "BENCH_STARTUP_SHORT": "5",
        "BENCH_STARTUP_LONG": "60",
        "BENCH_STARTUP_BASE_EVERY": "10",
        "BENCH_STARTUP_REPEAT": "1",
    },
    "storage_soak": {
        "BENCH_SOAK_SERVICES": "50",
        "BENCH_SOAK_ENDPOINTS": "3",
        "BENCH_SOAK_CHANGES": "3000",
        "BENCH_SOAK_RATE": "500",
        "BENCH_SOAK_WINDOW": "3",
        "BENCH_SOAK_BASE_EVERY": "5",
        "BENCH_SOAK_CHECKPOINT_EVENTS": "500",
    },
    "propagation": {
        "BENCH_PROPAGATION_SERVICES": "20",
        "BENCH_PROPAGATION_ENDPOINTS": "2",
        "BENCH_PROPAGATION_INGRESSES": "5",
        "BENCH_PROPAGATION_CHANGES": "3",
        "BENCH_PROPAGATION_SETTLE": "0.05",
        "BENCH_PROPAGATION_BURST": "50",
        "BENCH_PROPAGATION_BURST_S": "0.2",
        "BENCH_PROPAGATION_BURST_SERVICES": "10",
    },
    "ingress_20k": {
        "BENCH_INGRESS_COUNT": "30",
        "BENCH_INGRESS_SMALL": "0",
        "BENCH_INGRESS_ADDITIONS": "3",
        "BENCH_INGRESS_ENVOY_FLOOR": "2",
        "BENCH_INGRESS_SETTLE": "0.05",
    },
    "cold_load": {"BENCH_COLD_INGRESSES": "30"},
    "watcher_publish_rate": {"BENCH_WATCHER_INGRESSES": "30"},
    "registry_propagation": {
        "BENCH_REGISTRY_SERVICES": "10",
        "BENCH_REGISTRY_INSTANCES": "2",
        "BENCH_REGISTRY_BASE_SERVICES": "5",
        "BENCH_REGISTRY_BASE_INSTANCES": "1",
        "BENCH_REGISTRY_CHANGES": "3",
        "BENCH_REGISTRY_EUREKA_POLL": "0.2",
        "BENCH_REGISTRY_EUREKA_DEFAULT": "0",
        "BENCH_REGISTRY_SUCCESSIVE": "3",
    },
}
WITH_ENVOY = {"propagation", "ingress_20k", "registry_propagation", "cold_load"}
# Run with `--flame` as `make bench` runs them (bench/flame.py), and the graphs they must write: one
# benchmark with an edge subprocess, one that runs the builder's code in its own process.
FLAMED = {"edge_memory": ["edge"], "builder_full_build": ["bench"]}


def _cases() -> list[Any]:
    return [
        pytest.param(name, marks=[pytest.mark.slow] if name in WITH_ENVOY else [], id=name)
        for name in BENCHMARKS
    ]


def _run(name: str, results: Path) -> Path:
    """`python -m bench NAME` at the small size; its result file. Fails with the run's output."""
    argv = [sys.executable, "-m", "bench", name, *(["--flame"] if name in FLAMED else [])]
    for key, value in SMALL[name].items():
        argv += ["-p", f"{key}={value}"]
    env = {**os.environ, RESULTS_DIR_ENV: str(results)}
    # A session of its own: on a timeout the whole tree (nats-server, Envoy...) goes with it.
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        output, _ = proc.communicate()
        pytest.fail(f"{name} still running after {RUN_TIMEOUT_S} s:\n{output.decode()[-5000:]}")
    text = output.decode(errors="replace")
    assert proc.returncode == 0, f"{name} failed (exit {proc.returncode}):\n{text[-5000:]}"
    path = results / f"{name}.json"
    assert path.exists(), f"{name} wrote no {path.name}:\n{text[-3000:]}"
    return path


def _assert_form(result: dict[str, Any], name: str) -> None:
    assert set(result) == FIELDS, f"fields {sorted(set(result) ^ FIELDS)} differ from docs/design.md §8"
    assert result["name"] == name
    assert isinstance(result["value"], int | float) and isinstance(result["baseline"], int | float)
    assert isinstance(result["unit"], str) and result["unit"]
    if result["baseline"]:
        assert result["ratio"] == round(result["value"] / result["baseline"], 4)
    assert isinstance(result["budget"], int | float) and result["budget"] > 0
    assert result["budget_on"] in ("value", "ratio")
    judged = result[result["budget_on"]]
    assert result["pass"] is (judged is not None and judged <= result["budget"])
    assert isinstance(result["params"], dict) and isinstance(result["when"], str)
    if result["unit"] == "ms":
        # A latency: value is the p99, and params carries p50 and p99.
        assert result["params"]["p99_ms"] == result["value"]
        assert "p50_ms" in result["params"]


def test_every_benchmark_has_a_small_size() -> None:
    assert set(SMALL) == set(BENCHMARKS)
    modules = {p.stem for p in Path(bench.__file__).parent.glob("*.py") if "\nNAME = " in p.read_text()}
    modules.discard("gateway_api_conformance")  # run by tests/conformance against its floor
    assert modules == set(BENCHMARKS), "every benchmark module is listed in bench/__main__.py"


@pytest.mark.parametrize("name", _cases())
def test_benchmark_runs_small_with_its_checks(name: str, tmp_path: Path) -> None:
    result = json.loads(_run(name, tmp_path / "results").read_text())
    _assert_form(result, name)
    checks = result["params"]["checks"]
    assert checks and all(value is True for value in checks.values()), checks
    if name in WITH_ENVOY:
        assert any("envoy" in check for check in checks), f"{name}: no check is about Envoy: {checks}"
    if name in FLAMED:
        _assert_flame_graphs(result, tmp_path / "results", FLAMED[name])


def _assert_flame_graphs(result: dict[str, Any], results: Path, roles: list[str]) -> None:
    """params.flame names one graph per role, each an SVG of py-spy's beside the result."""
    flame = result["params"]["flame"]
    assert flame["rate_hz"] > 0 and flame["tool"].startswith("py-spy"), flame
    graphs = {graph["role"]: graph for graph in flame["graphs"]}
    assert sorted(graphs) == roles, flame
    for role, graph in graphs.items():
        assert graph["file"] == f"{result['name']}.{role}.svg" and graph["samples"] > 0, graph
        svg = (results / graph["file"]).read_text()
        assert "<svg" in svg and "py-spy" in svg, svg[:200]


def test_a_result_whose_check_failed_is_not_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path))
    common: dict[str, Any] = {"unit": "s", "baseline": 2.0, "budget": 3.0, "budget_on": "ratio", "params": {}}
    with pytest.raises(AssertionError):
        write_result("x", value=1.0, checks={"bytes_identical": False}, **common)
    with pytest.raises(AssertionError):
        write_result("x", value=1.0, checks={}, **common)
    assert not (tmp_path / "x.json").exists()
    held = write_result("x", value=5.0, checks={"bytes_identical": True}, **common)
    missed = write_result("y", value=7.0, checks={"bytes_identical": True}, **common)
    assert (held["ratio"], held["pass"], missed["ratio"], missed["pass"]) == (2.5, True, 3.5, False)
    assert json.loads((tmp_path / "x.json").read_text())["pass"] is True
