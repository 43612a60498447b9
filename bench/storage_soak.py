"""storage_soak: storage stays bounded by the history window however many changes go through.

Setup: a real nats-server and a real `xdsbus-builder` subprocess with a short history window
(BENCH_SOAK_WINDOW, 20 s), a ledger base every BENCH_SOAK_BASE_EVERY (50) versions and checkpoints every
BENCH_SOAK_CHECKPOINT_EVENTS (5,000) events, the newest BENCH_SOAK_CHECKPOINTS_KEEP (2) kept. The bench
publishes BENCH_SOAK_SERVICES (1,000) Services with their EndpointSlices of 10 endpoints, then
BENCH_SOAK_CHANGES (200,000) endpoint changes (one endpoint of one slice moves: a new
ClusterLoadAssignment body each time) at BENCH_SOAK_RATE (2,000) events/s, as a watcher would.

value     bytes on disk at the end: the sum of `state.bytes` over every JetStream stream (the event log,
          the ledger, and the streams behind every bucket and object store), once the builder has caught
          up and run its history collection after the last change.
baseline  the same sum when the run has lasted one window (the history then holds a full window).
          ratio = value / baseline; the budget (issue 12) is ratio <= 2: storage follows the window, not
          the number of changes.
params    both figures per stream; the peak; bytes sampled every few seconds; versions published, the
          first version still kept, bases and bodies left.

Checks: the ledger was purged (its first kept version is past the first version) and bodies swept
(fewer bodies stored than written); the head's resource set, read from its newest base, matches its
digest and every body of it fetches and verifies; the oldest kept version is still readable.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import workload
from bench.results_io import env_float, env_int, write_result
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import reader
from xdsbus.ledger.store import fetch_body
from xdsbus_builder.history import collect_interval
from xdsbus_dev.harness.processes import NatsServer, Service, tool

NAME = "storage_soak"
PARAMS = {
    "BENCH_SOAK_SERVICES": (1000, "Services, each with an EndpointSlice"),
    "BENCH_SOAK_ENDPOINTS": (10, "endpoints per slice"),
    "BENCH_SOAK_CHANGES": (200_000, "endpoint changes published"),
    "BENCH_SOAK_RATE": (2000, "endpoint changes per second"),
    "BENCH_SOAK_WINDOW": (20.0, "the builder's --history-window, seconds"),
    "BENCH_SOAK_BASE_EVERY": (50, "the builder's --base-every"),
    "BENCH_SOAK_CHECKPOINT_EVENTS": (5000, "the builder's --checkpoint-events"),
    "BENCH_SOAK_CHECKPOINTS_KEEP": (2, "the builder's --checkpoints-keep"),
}
BUDGET = 2.0
SCOPE = "default"
# Seconds between samples of the stream sizes.
SAMPLE_EVERY = 2.0


def _progress(text: str) -> None:
    print(f"   {text}", file=sys.stderr, flush=True)


async def stream_bytes(bus: Bus) -> dict[str, int]:
    """`state.bytes` of every JetStream stream on the server."""
    sizes: dict[str, int] = {}
    for info in await bus.js.streams_info():
        sizes[info.config.name or "?"] = info.state.bytes
    return sizes


async def _publish(bus: Bus, events: list[tuple[str, bytes]]) -> None:
    acks = [await bus.js.publish_async(subject, data) for subject, data in events]
    await asyncio.gather(*acks)


async def _caught_up(bus: Bus, timeout: float) -> int:
    """Until the ledger head is the last event (every change moves an endpoint, so each batch makes a
    version); the head version."""
    target = await last_event_seq(bus)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        head = await reader.head(bus, SCOPE)
        if head is not None and head.record.version >= target:
            return head.record.version
        await asyncio.sleep(0.2)
    raise TimeoutError(f"the builder did not reach event {target} within {timeout:.0f} s")


async def _bodies(bus: Bus) -> int:
    info = await bus.js.stream_info("KV_xdsbus_resources")
    return info.state.messages


async def _main(tmp: Path) -> dict[str, Any]:
    services = env_int("BENCH_SOAK_SERVICES", 1000)
    endpoints = env_int("BENCH_SOAK_ENDPOINTS", 10)
    changes = env_int("BENCH_SOAK_CHANGES", 200_000)
    rate = env_int("BENCH_SOAK_RATE", 2000)
    window = env_float("BENCH_SOAK_WINDOW", 20.0)
    base_every = env_int("BENCH_SOAK_BASE_EVERY", 50)
    checkpoint_events = env_int("BENCH_SOAK_CHECKPOINT_EVENTS", 5000)
    keep = env_int("BENCH_SOAK_CHECKPOINTS_KEEP", 2)

    nats = NatsServer(tmp / "nats")
    nats.start()
    bus = await connect(BusSettings(url=nats.url), name="bench-soak", attempts=5)
    builder = Service(
        [
            tool("xdsbus-builder"),
            "--nats-url",
            nats.url,
            "--instance-id",
            "soak",
            "--history-window",
            str(window),
            "--base-every",
            str(base_every),
            "--checkpoint-events",
            str(checkpoint_events),
            "--checkpoints-keep",
            str(keep),
        ],
        tmp / "builder.log",
    )
    samples: list[tuple[float, int]] = []
    try:
        builder.start()
        initial = [workload.wire(e) for e in workload.initial_events(services, endpoints, 0)]
        for i in range(0, len(initial), 1000):
            await _publish(bus, initial[i : i + 1000])
        first_version = await _caught_up(bus, 300)
        _progress(f"{services} services loaded (version {first_version}); {changes} changes at {rate}/s")

        churn = workload.EndpointChurn(services, endpoints)
        started = time.monotonic()
        at_window: dict[str, int] | None = None
        last_sample = 0.0
        sent = 0
        tick = 0.1
        while sent < changes:
            batch = min(changes - sent, max(1, int(rate * tick)))
            await _publish(bus, [workload.wire(churn.next()) for _ in range(batch)])
            sent += batch
            elapsed = time.monotonic() - started
            behind = sent / rate - elapsed
            if behind > 0:
                await asyncio.sleep(behind)
            if builder.proc is not None and builder.proc.poll() is not None:
                raise RuntimeError(f"the builder exited:\n{builder.output()[-3000:]}")
            now = time.monotonic() - started
            if now - last_sample >= SAMPLE_EVERY:
                last_sample = now
                samples.append((round(now, 1), sum((await stream_bytes(bus)).values())))
            if at_window is None and now >= window:
                at_window = await stream_bytes(bus)
                _progress(f"one window in: {sum(at_window.values()) / 2**20:.1f} MiB on disk")
            if sent % 20_000 < batch:
                _progress(f"{sent} changes sent in {now:.0f} s; {samples[-1][1] / 2**20:.1f} MiB")
        run_s = time.monotonic() - started
        head = await _caught_up(bus, 600)
        # Let the collection after the last change run: one window plus a few collection intervals,
        # so everything older than the window at the end is gone.
        settle = window + collect_interval(window) * 3
        _progress(f"caught up at version {head}; letting the history collection run for {settle:.0f} s")
        await asyncio.sleep(settle)
        at_end = await stream_bytes(bus)
        if at_window is None:
            raise RuntimeError(f"the run ({run_s:.0f} s) was shorter than one window ({window} s)")
        checks = await _check(bus, first_version, services * 2 + 1)
    finally:
        builder.terminate()
        await bus.close()
        nats.stop()
    peak = max(s[1] for s in samples) if samples else 0
    return {
        "value_is": "bytes on disk (sum of JetStream stream bytes) at the end",
        "baseline_is": "the same when the run had lasted one history window",
        "services": services,
        "endpoints": endpoints,
        "changes": changes,
        "rate_per_s": rate,
        "run_s": round(run_s, 1),
        "history_window_s": window,
        "base_every": base_every,
        "checkpoint_events": checkpoint_events,
        "checkpoints_keep": keep,
        "bytes_at_window_start": sum(at_window.values()),
        "bytes_at_end": sum(at_end.values()),
        "bytes_peak_sampled": peak,
        "streams_at_window_start": at_window,
        "streams_at_end": at_end,
        "samples": samples,
        "head_version": head,
        **checks,
    }


async def _check(bus: Bus, first_version: int, min_resources: int) -> dict[str, Any]:
    """The correctness checks; raises when one fails. Returns what they found."""
    head = await reader.head(bus, SCOPE)
    assert head is not None
    first_kept = None
    async for entry in reader.entries(bus, SCOPE):
        first_kept = entry.record.version
        break
    if first_kept is None or first_kept <= first_version:
        raise AssertionError(f"the ledger was not purged: its first version is {first_kept}")
    resources = await reader.resource_set(bus, SCOPE, head.record.version)
    if not reader.digest_matches(head.record, resources) or len(resources) < min_resources:
        raise AssertionError(f"head {head.record.version}: {len(resources)} resources, digest mismatch")
    for sha in set(resources.values()):
        await fetch_body(bus, sha)
    oldest = await reader.resource_set(bus, SCOPE, first_kept)
    bodies = await _bodies(bus)
    events = (await bus.js.stream_info(EVENTS_STREAM)).state
    return {
        "first_kept_version": first_kept,
        "bodies_stored_at_end": bodies,
        "head_resources": len(resources),
        "oldest_kept_resources": len(oldest),
        "event_log_first_seq_at_end": events.first_seq,
        "event_log_messages_at_end": events.messages,
    }


def run() -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="xdsbus-bench-soak-") as tmp:
        params = asyncio.run(_main(Path(tmp)))
    if params["bodies_stored_at_end"] >= params["changes"]:
        raise AssertionError(f"{params['bodies_stored_at_end']} bodies left of {params['changes']}: no sweep")
    return write_result(
        NAME,
        value=params["bytes_at_end"],
        unit="bytes",
        baseline=params["bytes_at_window_start"],
        budget=BUDGET,
        budget_on="ratio",
        # Asserted in _check and run.
        checks={
            "ledger_purged": True,
            "bodies_swept": True,
            "head_complete_and_verified": True,
            "oldest_kept_version_readable": True,
        },
        params=params,
    )
