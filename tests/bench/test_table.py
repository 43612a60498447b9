"""`python -m bench.table`: bench/README.md's "Latest figures" from the results, between its markers."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import pytest

from bench.results_io import RESULTS_DIR_ENV, write_result
from bench.table import BEGIN, END, main


def test_the_table_is_rewritten_between_the_markers_from_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    monkeypatch.setenv(RESULTS_DIR_ENV, str(results))
    flame = {"rate_hz": 50, "tool": "py-spy 0.4.3", "graphs": [
        {"role": "edge", "pid": 7, "file": "edge_memory.edge.svg", "samples": 90, "errors": 0},
        {"role": "edge-2", "pid": 8, "why": "py-spy exited 1: Operation not permitted (os error 1)"},
    ]}  # fmt: skip
    write_result(
        "edge_memory", value=3 * 2**20, unit="bytes", baseline=2**20, budget=2.0, budget_on="ratio",
        checks={"edge_holds_every_resource": True}, params={"services": 10_000, "flame": flame},
    )  # fmt: skip
    write_result(
        "propagation", value=29.59, unit="ms", baseline=21.46, budget=50.0, budget_on="value",
        checks={"envoy_serves": True}, params={"p50_ms": 11.0, "p99_ms": 29.59},
    )  # fmt: skip
    (results / "not_a_result.json").write_text('{"suite": "no value"}')
    readme = tmp_path / "README.md"
    readme.write_text(f"# Benchmarks\n\n{BEGIN}\n| stale | table |\n{END}\n\nAfter.\n")

    assert main(["--readme", str(readme)]) == 0

    text = readme.read_text()
    assert text.startswith(f"# Benchmarks\n\n{BEGIN}\n| benchmark | value |")
    assert text.endswith(f"{END}\n\nAfter.\n")
    assert "stale" not in text and "not_a_result" not in text
    lines = [line.split(" | ") for line in text.splitlines() if line.startswith("| `")]
    rows = {cells[0].strip("| `"): cells for cells in lines}
    date = rows["edge_memory"][7]
    assert rows["edge_memory"][1:7] == ["3.0 MiB", "1.0 MiB", "3", "ratio ≤ 2", "**no**", "10,000 services"]
    assert len(date) == 10 and date.startswith("20")
    machine = f"{os.cpu_count()} CPUs, Python {platform.python_version()}, load "
    assert rows["edge_memory"][8].startswith(machine)
    assert rows["edge_memory"][9] == (
        "`edge_memory.edge.svg` (50/s); missing edge-2: py-spy exited 1: Operation not permitted (os error 1)"
    )
    assert rows["propagation"][1:6] == ["29.6 ms", "21.5 ms", "1.38", "50 ms", "yes"]
    assert rows["propagation"][9] == "not sampled"
    assert rows["builder_full_build"][1] == "not measured"


def test_a_readme_without_the_markers_is_left_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path))
    readme = tmp_path / "README.md"
    readme.write_text("# Benchmarks\n")
    with pytest.raises(ValueError, match="markers"):
        main(["--readme", str(readme)])
    assert readme.read_text() == "# Benchmarks\n"
