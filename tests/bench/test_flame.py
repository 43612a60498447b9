"""bench/flame.py when py-spy cannot sample: the benchmark goes on and its result says why there is no
graph. (A graph written for a real edge and for an in-process benchmark: tests/bench/test_benchmarks.py,
the runs in FLAMED.)"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench.flame import Recording
from bench.results_io import RESULTS_DIR_ENV


def test_without_py_spy_nothing_is_sampled_and_the_result_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path))
    with Recording("edge_memory", rate=10, py_spy=str(tmp_path / "no-py-spy")) as recording:
        recording.attach("edge", 1)
    params = recording.params()
    assert params["rate_hz"] == 10 and "graphs" not in params
    assert "py-spy not usable" in params["why"] and "no-py-spy" in params["why"]
    assert not list(tmp_path.glob("*.svg"))


def test_a_process_py_spy_cannot_sample_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RESULTS_DIR_ENV, str(tmp_path))
    (tmp_path / "x.edge-2.svg").write_text("<svg/>")  # an earlier run's graph goes with its result
    not_python = subprocess.Popen(["sleep", "30"])
    try:
        with Recording("x", rate=10) as recording:
            recording.attach("edge", not_python.pid)
            # As when ptrace is denied: py-spy gives up on its own while the benchmark runs on.
            [spy] = recording._recorders
            spy.proc.wait(timeout=20)
    finally:
        not_python.kill()
        not_python.wait()
    [graph] = recording.params()["graphs"]
    assert graph["role"] == "edge" and graph["pid"] == not_python.pid and "file" not in graph
    assert graph["why"].startswith("py-spy exited 1: Failed to find python version"), graph
    assert not list(tmp_path.glob("*.svg"))
