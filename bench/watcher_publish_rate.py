"""watcher_publish_rate: watch-k8s alone publishing a cold list of 60k objects into the event log.

The "watcher publish rate" of docs/design.md §8: how fast a watcher puts a source's objects into
the log when the watcher is the only work. `cold_load` reports the same rate inside a whole cold start,
where the watcher shares two cores with the builder, the edge, Envoy and nats-server (and gets about
half of one); this benchmark tells the watcher's own speed apart from the share the others leave it.

Setup: the fake API server of tests/fakes/kube_api.py (in this process) holding BENCH_WATCHER_INGRESSES
(20k) Ingresses, Services and EndpointSlices, the objects of cold_load; nats-server with the layout
applied; then `xdsbus-watch-k8s` starts, with no builder, edge or Envoy. The load ends when the watcher
logs the resync of each of the three kinds (its sync_end stored).

value     µs of wall time per event, between the watcher's first and last event stored in the log
          (JetStream's timestamps): 1e6 / events per second. The budget, over 20k events/s, is value
          ≤ 50 µs.
baseline  the same per event for nats-py's own pipelined JetStream publish (`js.publish_async`, 4,000
          in flight, acknowledgements awaited at the end) of the very subjects, payloads and message
          ids the watcher stored, into a stream of their own with the event stream's settings, from this
          process once the watcher has stopped: what the transport alone allows a Python client.
          ratio = value / baseline (how many times the bare transport's time per event the watcher takes).
params    events, events/s, events per CPU-s of the watcher process (its start, the lists and
          normalization included), its CPU seconds, its start to its first event, where each kind's
          events fall ([first, last] s after the start), the longest pause between two events; the
          baseline's events/s and the CPU seconds it took this process.

Checks: the log holds exactly one upsert of every object; the baseline's stream holds every event once.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cold_load import Arrivals, _every_object_once, _rates
from bench.edge_fanout_1000 import cpu_seconds
from bench.ingress_20k import CLUSTER_NAME, K8sStack, _stream_messages
from bench.results_io import env_float, env_int, write_result
from xdsbus.bus import BusSettings, connect
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.state import FoldState
from xdsbus_dev.harness.processes import Service

NAME = "watcher_publish_rate"
BUDGET_US = 50.0  # 20k events/s
PARAMS = {
    "BENCH_WATCHER_INGRESSES": (20_000, "Ingresses listed, each with a Service and EndpointSlice of its own"),
    "BENCH_WATCHER_TIMEOUT": (300, "seconds allowed for the load"),
}
KINDS = ("Ingress", "Service", "EndpointSlice")
BASELINE_STREAM = "bench_raw_publish"
BASELINE_PREFIX = "bench.raw"
BASELINE_IN_FLIGHT = 4000


class KeptArrivals(Arrivals):
    """Arrivals that also keep each event's subject, payload and message id, for the baseline."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[tuple[str, bytes, str]] = []

    def stored(self, msg: Any) -> None:
        super().stored(msg)
        self.kept.append((msg.subject, msg.data, (msg.headers or {}).get("Nats-Msg-Id", "")))


def _resynced(watcher: Service) -> bool:
    """The watcher logged the resync of every kind: each one's sync_end is stored."""
    output = watcher.output()
    return all(f"resync of {kind}:" in output for kind in KINDS)


async def _baseline(bus: Any, kept: list[tuple[str, bytes, str]]) -> dict[str, Any]:
    """nats-py's publish_async of `kept` into a stream configured as the event stream; its rate between
    the first and last message stored, and this process's CPU seconds for it."""
    config = (await bus.js.stream_info(EVENTS_STREAM)).config
    config.name = BASELINE_STREAM
    config.subjects = [f"{BASELINE_PREFIX}.>"]
    await bus.js.add_stream(config)
    js = bus.nc.jetstream(publish_async_max_pending=BASELINE_IN_FLIGHT)
    cpu = time.process_time()
    for subject, data, message_id in kept:
        await js.publish_async(
            f"{BASELINE_PREFIX}.{subject}", data, headers={"Nats-Msg-Id": message_id} if message_id else None
        )
    await js.publish_async_completed()
    cpu = time.process_time() - cpu
    state = (await bus.js.stream_info(BASELINE_STREAM)).state
    if state.messages != len(kept):
        raise AssertionError(f"the baseline stream holds {state.messages} messages, not {len(kept)}")
    first = await bus.js.get_msg(BASELINE_STREAM, state.first_seq)
    last = await bus.js.get_msg(BASELINE_STREAM, state.last_seq)
    span = (last.time - first.time).total_seconds()
    return {
        "events": len(kept),
        "events_per_s": round((len(kept) - 1) / span) if span > 0 else 0,
        "first_to_last_event_s": round(span, 3),
        "cpu_s": round(cpu, 2),
    }


async def _main(tmp: Path) -> dict[str, Any]:
    count = env_int("BENCH_WATCHER_INGRESSES", 20_000)
    timeout = env_float("BENCH_WATCHER_TIMEOUT", 300)
    # The stack's fake and nats-server only: no builder, edge or Envoy is started.
    stack = K8sStack(tmp, count, stats_flush=0)
    await stack.kube.start()
    stack.nats.start()
    watcher: Service | None = None
    try:
        fake_s = stack.load()
        _progress(f"{count} Ingresses, Services and EndpointSlices in the fake ({fake_s:.1f} s, not timed)")
        async with contextlib.AsyncExitStack() as exits:
            bus = await connect(BusSettings(url=stack.nats.url), name="bench-watcher-rate")
            exits.push_async_callback(bus.close)
            wall0 = time.time()
            watcher = stack.start_watcher()
            assert watcher.proc is not None
            await stack.wait(
                lambda: asyncio.to_thread(_resynced, watcher),
                timeout=timeout,
                what="watch-k8s resyncing every kind",
                interval=0.05,
            )
            watcher_cpu = cpu_seconds(watcher.proc.pid)
            await asyncio.to_thread(watcher.terminate)
            if await _stream_messages(bus) < 3 * count:
                raise AssertionError(f"the log holds fewer than the {3 * count} objects listed")
            arrivals = KeptArrivals()
            upserts = await _every_object_once(bus, count, FoldState(), arrivals)
            rate = _rates(arrivals, wall0)[f"k8s/{CLUSTER_NAME}"]
            rate["watcher_cpu_s"] = round(watcher_cpu, 2)
            rate["events_per_cpu_s"] = round(rate["events"] / watcher_cpu) if watcher_cpu else 0
            _progress(f"watch-k8s: {rate['events']} events at {rate['events_per_s']}/s")
            baseline = await _baseline(bus, arrivals.kept)
            _progress(f"nats-py publish_async: {baseline['events']} events at {baseline['events_per_s']}/s")
    finally:
        if watcher is not None:
            await asyncio.to_thread(watcher.terminate)
        stack.nats.stop()
        await stack.kube.stop()
    return {
        "value_is": "µs of wall time per event between watch-k8s's first and last event stored, listing "
        f"{count} Ingresses + Services + EndpointSlices with nothing else running",
        "baseline_is": "the same for nats-py's js.publish_async of the same subjects, payloads and message "
        f"ids ({BASELINE_IN_FLIGHT} in flight) into a stream configured as the event stream",
        "ingresses": count,
        "objects": 3 * count,
        "watcher": rate,
        "baseline": baseline,
        "budget_events_per_s": round(1e6 / BUDGET_US),
        "upserts_in_log": upserts,
        "fake_loaded_s_not_timed": round(fake_s, 2),
    }


def _per_event_us(rate: dict[str, Any]) -> float:
    return round(1e6 / rate["events_per_s"], 2) if rate["events_per_s"] else float("inf")


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-watcher-") as tmp:
        params = asyncio.run(_main(Path(tmp)))
    return write_result(
        NAME,
        value=_per_event_us(params["watcher"]),
        unit="us",
        baseline=_per_event_us(params["baseline"]),
        budget=BUDGET_US,
        budget_on="value",
        # Asserted in _main, _every_object_once and _baseline.
        checks={"every_object_in_the_log_once": True, "baseline_stored_every_event": True},
        params=params,
    )


def _progress(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)
