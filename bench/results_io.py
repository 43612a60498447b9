"""Writing benchmark results: `bench/results/<name>.json` in the form of docs/design.md §8, plus small
helpers."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

RESULTS_DIR = Path(__file__).resolve().parent / "results"
# Where results go instead of bench/results/ (the tests run every benchmark small into a temporary
# directory, so that a test run never overwrites the figures of a full-size run).
RESULTS_DIR_ENV = "BENCH_RESULTS_DIR"

BudgetOn = Literal["value", "ratio"]


def results_dir() -> Path:
    """bench/results/, or the directory BENCH_RESULTS_DIR names."""
    override = os.environ.get(RESULTS_DIR_ENV, "").strip()
    return Path(override) if override else RESULTS_DIR


def env_int(name: str, default: int) -> int:
    """An integer size from the environment (accepts `1_000_000` and `1e6`)."""
    raw = os.environ.get(name, "").strip().replace("_", "")
    if not raw:
        return default
    return int(float(raw)) if ("e" in raw.lower() or "." in raw) else int(raw)


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100): an observed value, never an interpolation."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def latency_summary(seconds: Sequence[float], prefix: str = "") -> dict[str, float]:
    """p50/p99/max in milliseconds, keyed `<prefix>p50_ms`, `<prefix>p99_ms`, `<prefix>max_ms`."""
    return {
        f"{prefix}p50_ms": round(percentile(seconds, 50) * 1000, 4),
        f"{prefix}p99_ms": round(percentile(seconds, 99) * 1000, 4),
        f"{prefix}max_ms": round(max(seconds) * 1000, 4),
        f"{prefix}samples": len(seconds),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    from google.protobuf import __version__ as protobuf_version
    from google.protobuf.internal import api_implementation

    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "python": platform.python_version(),
        "protobuf": f"{protobuf_version} ({api_implementation.Type()})",
        "cpus": os.cpu_count(),
        "loadavg_1m_at_end": round(load[0], 2),
    }


def write_result(
    name: str,
    *,
    value: float,
    unit: str,
    baseline: float,
    budget: float,
    budget_on: BudgetOn,
    checks: dict[str, bool],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Write `<results dir>/<name>.json` and return what was written.

    ratio = value / baseline; `pass` says whether the field `budget_on` names is at most `budget` (every
    budget of docs/design.md §8 is an upper bound; a missing ratio passes nothing). `checks` are the
    correctness checks the run made (byte equality, digests, Envoy serving...), each True: a benchmark
    raises rather than write a result whose check failed, and the tests assert them at a small size.
    """
    if not checks or not all(checks.values()):
        raise AssertionError(f"{name}: correctness checks missing or failed: {checks}")
    ratio = round(value / baseline, 4) if baseline else None
    judged = value if budget_on == "value" else ratio
    result = {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "budget": budget,
        "budget_on": budget_on,
        "pass": judged is not None and judged <= budget,
        "params": {**params, "checks": checks, "machine": machine()},
        "when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / f"{name}.json", result)
    return result


def amend_params(name: str, **params: Any) -> dict[str, Any]:
    """Add `params` to the params of the result `<name>.json` the run just wrote (what the runner knows
    only after the benchmark, e.g. `flame`); the result as amended."""
    path = results_dir() / f"{name}.json"
    result: dict[str, Any] = json.loads(path.read_text())
    result["params"].update(params)
    _write(path, result)
    return result


def _write(path: Path, result: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)
