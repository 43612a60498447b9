"""builder_stall: the longest event-loop stall while the builder writes a checkpoint at 20k objects.

value     the longest gap (ms) between the wake-ups of a ticker task (a 1 ms sleep in a loop) while a
          checkpoint of BENCH_STALL_OBJECTS (20k) objects is taken as the builder takes it: snapshot of the
          state (checkpoints.snapshot), encoding in steps (checkpoints.encode_snapshot) and the upload to
          Object Store xdsbus_checkpoints on a real nats-server. The longest over BENCH_STALL_REPEAT runs.
baseline  the same gap, same state, same run, with the checkpoint encoded the way the builder did before
          (one blocking msgpack + zlib of the whole Checkpoint, its published list sorted), then uploaded.
          Budget: value <= 50 ms (issue 12: "checkpoint encoding stalls the builder 0.4-0.85 s at 20k
          objects"; docs/design.md §5 "encoding it away from the event loop").
params    p50/p99 of the ticker's gaps during the new checkpoint, the snapshot's own time (it runs on the
          loop, so it is part of the value), the checkpoint bytes and the time both ways take in all.

The state is Services with their EndpointSlices and Ingresses (bench/workload.py); the published list
is the translator's table after a full build of it. Checks: both checkpoints decode to the state and
the published list they were taken from.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import workload
from bench.results_io import env_int, latency_summary, write_result
from xdsbus.bus import BusSettings, connect
from xdsbus.contract.resources import ResourceKey
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.processes import NatsServer

NAME = "builder_stall"
BUDGET_MS = 50.0
SCOPE = "bench"
PARAMS = {
    "BENCH_STALL_OBJECTS": (20_000, "objects in the state (Services, their EndpointSlices, Ingresses)"),
    "BENCH_STALL_ENDPOINTS": (10, "endpoints per EndpointSlice"),
    "BENCH_STALL_REPEAT": (3, "checkpoints taken each way; the value is the longest stall of all"),
}
TICK_S = 0.001


class Ticker:
    """A task that sleeps 1 ms in a loop and records the gaps between its wake-ups."""

    def __init__(self) -> None:
        self.gaps: list[float] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            await asyncio.sleep(TICK_S)
            now = time.perf_counter()
            self.gaps.append(now - last)
            last = now

    async def __aenter__(self) -> Ticker:
        self._task = asyncio.create_task(self._run())
        # Let it start, so the first gap is measured from inside the loop.
        await asyncio.sleep(TICK_S)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task


async def _stall(take: Callable[[], Awaitable[bytes]]) -> tuple[float, list[float], bytes, float]:
    """(longest gap s, every gap, the checkpoint written, seconds it took in all)."""
    gc.collect()
    async with Ticker() as ticker:
        t0 = time.perf_counter()
        data = await take()
        took = time.perf_counter() - t0
    return max(ticker.gaps), ticker.gaps, data, took


async def _main(store: Path) -> dict[str, Any]:
    objects = env_int("BENCH_STALL_OBJECTS", 20_000)
    endpoints = env_int("BENCH_STALL_ENDPOINTS", 10)
    repeat = max(1, env_int("BENCH_STALL_REPEAT", 3))
    services = max(1, objects // 3)
    state: FoldState = workload.folded_state(services, endpoints, max(0, objects - 2 * services))
    translator = Translator()
    translator.full_build(state)
    translator.table.commit()
    published: dict[ResourceKey, str] = translator.table.committed()

    server = NatsServer(store / "nats")
    server.start()
    try:
        bus = await connect(BusSettings(url=server.url), name="bench-stall", attempts=5)
        try:
            snapshot_s: list[float] = []

            async def new_way() -> bytes:
                t0 = time.perf_counter()
                snap = checkpoints.snapshot(
                    scope=SCOPE,
                    translator_version="bench",
                    state=state,
                    ledger_version=state.seq,
                    ledger_stream_seq=1,
                    published=published,
                )
                snapshot_s.append(time.perf_counter() - t0)
                data = await checkpoints.encode_snapshot(snap)
                await checkpoints.save(bus, SCOPE, state.seq, data)
                return data

            async def old_way() -> bytes:
                data = checkpoints.encode(
                    checkpoints.Checkpoint(
                        scope=SCOPE,
                        translator_version="bench",
                        state=state,
                        ledger_version=state.seq,
                        ledger_stream_seq=1,
                        published=[(k.type_url, k.name, sha) for k, sha in sorted(published.items())],
                    )
                )
                await checkpoints.save(bus, SCOPE, state.seq, data)
                return data

            new_runs = []
            old_runs = []
            # Interleaved, so that drift on a shared machine hits both ways alike.
            for _ in range(repeat):
                new_runs.append(await _stall(new_way))
                old_runs.append(await _stall(old_way))
        finally:
            await bus.close()
    finally:
        server.stop()

    for _, _, data, _ in new_runs + old_runs:
        loaded = checkpoints.decode(data)
        if loaded.state != state:
            raise AssertionError("a checkpoint does not decode to the state it was taken from")
        if {ResourceKey(t, n): sha for t, n, sha in loaded.published} != published:
            raise AssertionError("a checkpoint does not decode to the published list it was taken from")

    gaps = [gap for _, run_gaps, _, _ in new_runs for gap in run_gaps]
    return {
        "value_is": f"longest event-loop stall (ms) while a checkpoint of {state.count()} objects is "
        "snapshotted, encoded in steps and uploaded",
        "baseline_is": "the same with the whole checkpoint encoded in one blocking step, as before",
        "objects": state.count(),
        "published_resources": len(published),
        "endpoints_per_slice": endpoints,
        "repeat": repeat,
        "value_ms": round(max(r[0] for r in new_runs) * 1000, 3),
        "baseline_ms": round(max(r[0] for r in old_runs) * 1000, 3),
        "gaps": latency_summary(gaps),
        "snapshot_ms_max": round(max(snapshot_s) * 1000, 3),
        "checkpoint_bytes": len(new_runs[0][2]),
        "checkpoint_bytes_before": len(old_runs[0][2]),
        "total_s_new": round(max(r[3] for r in new_runs), 3),
        "total_s_before": round(max(r[3] for r in old_runs), 3),
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-stall-") as tmp:
        params = asyncio.run(_main(Path(tmp)))
    return write_result(
        NAME,
        value=params["value_ms"],
        unit="ms (longest stall)",
        baseline=params["baseline_ms"],
        budget=BUDGET_MS,
        budget_on="value",
        # Asserted as the run went (_main): both decode to what they were taken from.
        checks={"new_decodes_to_state": True, "before_decodes_to_state": True},
        params=params,
    )
