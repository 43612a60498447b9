"""Flame graphs of a benchmark's builder, edges and watch-k8s (`python -m bench --flame`, on in
`make bench`).

While a benchmark runs, `py-spy record` samples every `xdsbus-builder`, `xdsbus-edge` and
`xdsbus-watch-k8s` subprocess it starts (the harness tells us of each start:
`xdsbus_dev.harness.processes.observe_starts`) and, for the benchmarks that run the builder's code in
their own process (IN_PROCESS), that process. Each graph is written beside the result as
`<name>.<role>.svg` (role `builder`, `edge`, `watch-k8s`, `bench` for the benchmark's own process; a
second edge of the run is `edge-2`, and so on), and the result's `params.flame` says what was sampled,
at what rate, and why a graph is missing. A profiler that cannot run (py-spy not installed,
ptrace denied) never fails the benchmark: its result says why there is no graph.

py-spy reads the target's memory from outside (`--nonblocking`: the target is never paused), but its
sampling costs CPU on the same machine, so figures taken with `--flame` carry `params.flame`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import msgspec

from bench.results_io import env_int, results_dir
from xdsbus_dev.harness.processes import Service, observe_starts, tool

# Samples per second of each recorder: a low rate, so that sampling costs little of the 2 CPUs the
# figures are taken on (bench/README.md, "Flame graphs", has the overhead measured).
RATE_ENV = "BENCH_FLAME_RATE"
DEFAULT_RATE = 50
# The console scripts worth a graph, by the role their graph is named after.
ROLES = {"xdsbus-builder": "builder", "xdsbus-edge": "edge", "xdsbus-watch-k8s": "watch-k8s"}
# Benchmarks that run the builder's code (translator, fold, replay) in the benchmark's own process.
IN_PROCESS = frozenset(
    {"builder_full_build", "builder_fold_rate", "builder_stall", "replay_1m_recent", "tls_hosts_change"}
)
# How long py-spy may take to write its SVG after SIGINT (a long run's graph has many stacks).
STOP_TIMEOUT_S = 60.0

_SAMPLES = re.compile(r"Samples: (\d+) Errors: (\d+)")


class Graph(msgspec.Struct, omit_defaults=True):
    """One process sampled: `file` (beside the result) when py-spy wrote it, else `why` not."""

    role: str
    pid: int
    file: str | None = None
    samples: int | None = None
    errors: int | None = None
    why: str | None = None


class FlameReport(msgspec.Struct, omit_defaults=True):
    """`params.flame` of a result taken with sampling on."""

    rate_hz: int
    tool: str | None = None
    graphs: list[Graph] = []
    why: str | None = None  # why nothing was sampled at all


class _Recorder:
    """One `py-spy record` attached to one pid."""

    def __init__(self, py_spy: str, role: str, pid: int, svg: Path, rate: int) -> None:
        self.role = role
        self.pid = pid
        self.svg = svg
        self.output: IO[bytes] = tempfile.TemporaryFile()
        argv = [py_spy, "record", "--pid", str(pid), "--nonblocking", "--rate", str(rate)]
        argv += ["--format", "flamegraph", "--output", str(svg)]
        # Without a Rust backtrace, py-spy's error is its last words (_error).
        env = {**os.environ, "RUST_BACKTRACE": "0", "RUST_LIB_BACKTRACE": "0"}
        self.proc = subprocess.Popen(argv, stdout=self.output, stderr=subprocess.STDOUT, env=env)

    def stop(self) -> Graph:
        """SIGINT (py-spy writes its SVG then), or nothing when the target exited and py-spy with it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.output.seek(0)
        text = self.output.read().decode(errors="replace")
        self.output.close()
        counts = _SAMPLES.search(text)
        graph = Graph(self.role, self.pid)
        if counts:
            graph.samples, graph.errors = int(counts.group(1)), int(counts.group(2))
        if self.svg.exists() and self.svg.stat().st_size:
            graph.file = self.svg.name
        else:
            graph.why = f"py-spy exited {self.proc.returncode}: {_error(text)}"
        return graph


def _error(output: str) -> str:
    """py-spy's error and its innermost cause ("Operation not permitted" when ptrace is denied)."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    error = next((line.removeprefix("Error: ") for line in lines if line.startswith("Error:")), None)
    if error is None:
        return lines[-1] if lines else "no output"
    causes = [line.split(": ", 1)[1] for line in lines if re.match(r"\d+: ", line)]
    return f"{error} ({causes[-1]})" if causes else error


class Recording:
    """`with Recording(name): run()`: graphs of the run's builder and edges, stopped and written on exit."""

    def __init__(self, name: str, rate: int | None = None, py_spy: str | None = None) -> None:
        self.name = name
        self.rate = rate if rate is not None else env_int(RATE_ENV, DEFAULT_RATE)
        self.directory = results_dir()
        self.report = FlameReport(rate_hz=self.rate)
        self._recorders: list[_Recorder] = []
        self._roles: dict[str, int] = {}
        self._py_spy = _usable(py_spy or _default_py_spy(), self.report)
        self._exits = contextlib.ExitStack()

    def __enter__(self) -> Recording:
        self.directory.mkdir(parents=True, exist_ok=True)
        # The graphs of an earlier run belong to the result this run replaces.
        for old in self.directory.glob(f"{self.name}.*.svg"):
            old.unlink()
        if self._py_spy is None:
            return self
        self._exits.enter_context(observe_starts(self._started))
        if self.name in IN_PROCESS:
            self.attach("bench", os.getpid())
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exits.close()
        self.report.graphs = [recorder.stop() for recorder in self._recorders]

    def params(self) -> dict[str, Any]:
        """What the result's `params.flame` holds."""
        return msgspec.to_builtins(self.report)

    def _started(self, service: Service) -> None:
        role = ROLES.get(Path(service.argv[0]).name)
        if role is not None and service.proc is not None:
            self.attach(role, service.proc.pid)

    def attach(self, role: str, pid: int) -> None:
        """Sample `pid` into `<name>.<role>.svg` until the recording ends (or the process does)."""
        if self._py_spy is None:
            return  # the report says why
        count = self._roles[role] = self._roles.get(role, 0) + 1
        label = role if count == 1 else f"{role}-{count}"
        svg = self.directory / f"{self.name}.{label}.svg"
        self._recorders.append(_Recorder(self._py_spy, label, pid, svg, self.rate))


def _default_py_spy() -> str:
    try:
        return tool("py-spy")
    except FileNotFoundError:
        return "py-spy"


def _usable(py_spy: str, report: FlameReport) -> str | None:
    """`py_spy` when it runs (its version in `report.tool`); None with `report.why` when it does not."""
    try:
        argv = [py_spy, "--version"]
        version = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        report.why = f"py-spy not usable ({type(exc).__name__}: {exc}); pip install py-spy"
        return None
    report.tool = version.stdout.strip()
    return py_spy
