"""builder_fold_rate: the incremental fold at 10k Services, and whether its cost follows the change.

value     p99 (ms) of one endpoint change at BENCH_SERVICES (10k) services: fold the event (decode +
          apply) + Translator.update + table.commit + table.digest, as the builder does for a version.
baseline  the same p99 at BENCH_SERVICES_SMALL (1k) services, measured in the same run, interleaved
          change by change with the large one: ratio = t(10k) / t(1k). docs/design.md §8: "cost
          proportional to the change, not to the total", i.e. a ratio near 1 where a cost that followed
          the total would give 10. Budget: ratio <= 1.5 (issue 12 point 9: the two-level digest of
          docs/design.md §5 makes the digest O(change) too).
params    events_per_s: endpoint-change events folded per second at 10k services, with Translator.update,
          table.commit and table.digest once per batch of BENCH_FOLD_BATCH (100) events; the p50/p99 of
          both sizes, split into fold+update+commit and digest; garbage collections seen while sampling.

Each event is an EndpointSlice upsert (the real envelope, msgpack) that moves one endpoint of one
Service to a new address; both states also hold one Ingress per Service (an endpoint change touches no
route, as in production). Checks: every single change changes exactly one resource, nothing is rejected,
and after all the changes the incremental table equals a full build of the same state (same digest).
"""

from __future__ import annotations

import gc
import time
from typing import Any

from bench import workload
from bench.results_io import env_int, latency_summary, median, percentile, write_result
from xdsbus.fold.folding import BatchResult, fold_message
from xdsbus.fold.state import FoldState
from xdsbus.translate.translator import Translator

NAME = "builder_fold_rate"
BUDGET_RATIO = 1.5
PARAMS = {
    "BENCH_SERVICES": (10_000, "Services (and Ingresses) of the large state"),
    "BENCH_SERVICES_SMALL": (1_000, "Services (and Ingresses) of the baseline state"),
    "BENCH_ENDPOINTS": (10, "endpoints per EndpointSlice"),
    "BENCH_FOLD_EVENTS": (20_000, "endpoint changes folded for the events/s figure"),
    "BENCH_FOLD_BATCH": (100, "events per update + commit + digest in the events/s figure"),
    "BENCH_CHANGES": (200, "single changes timed at each size (after 20 warm-up changes)"),
}


class Scope:
    """A folded state with its translator after a full build, and a source of endpoint changes."""

    def __init__(self, services: int, endpoints: int, seed: int) -> None:
        self.services = services
        self.state: FoldState = workload.folded_state(services, endpoints, services)
        self.seq = self.state.seq
        self.translator = Translator()
        self.translator.full_build(self.state)
        self.translator.table.commit()
        self.translator.take_status_changes()
        self.churn = workload.EndpointChurn(services, endpoints, seed=seed)

    def messages(self, count: int) -> list[tuple[int, str, bytes]]:
        """The next `count` changes as stored messages: (stream sequence, subject, payload)."""
        out = []
        for _ in range(count):
            self.seq += 1
            subject, data = workload.wire(self.churn.next())
            out.append((self.seq, subject, data))
        return out

    def fold_batch(self, batch: list[tuple[int, str, bytes]]) -> int:
        """What the builder does with a batch: fold, update, commit, digest. Returns resources changed."""
        result = BatchResult()
        for seq, subject, data in batch:
            fold_message(self.state, seq, subject, data, result)
        table = self.translator.table
        self.translator.update(self.state, result.changed)
        changes = table.commit()
        if changes:
            table.digest()
        self.translator.take_status_changes()
        if result.rejected:
            raise AssertionError(f"rejected: {result.rejected[0]}")
        return len(changes.changed)

    def one_change(self, message: tuple[int, str, bytes]) -> tuple[float, float]:
        """One change: (fold + update + commit seconds, digest seconds)."""
        seq, subject, data = message
        t0 = time.perf_counter()
        result = BatchResult()
        fold_message(self.state, seq, subject, data, result)
        self.translator.update(self.state, result.changed)
        changes = self.translator.table.commit()
        t1 = time.perf_counter()
        self.translator.table.digest()
        t2 = time.perf_counter()
        if len(changes.changed) != 1:
            raise AssertionError(f"an endpoint change changed {len(changes.changed)} resources, not 1")
        return t1 - t0, t2 - t1

    def check_equals_full_build(self) -> None:
        """The table the changes left equals a full build of the same state (the builder's restore)."""
        full = Translator()
        full.full_build(self.state)
        if full.table.digest() != self.translator.table.digest():
            raise AssertionError(f"at {self.services} services: incremental table differs from a full build")


def _events_per_second(scope: Scope, events: int, batch: int) -> tuple[float, int]:
    messages = scope.messages(events)
    batches = [messages[i : i + batch] for i in range(0, len(messages), batch)]
    changed = 0
    gc.collect()
    t0 = time.perf_counter()
    for b in batches:
        changed += scope.fold_batch(b)
    return events / (time.perf_counter() - t0), changed


def _sizes(sizes: list[tuple[float, float]]) -> dict[str, Any]:
    totals = [a + b for a, b in sizes]
    out = latency_summary(totals)
    out["fold_update_commit_p50_ms"] = round(percentile([a for a, _ in sizes], 50) * 1000, 4)
    out["digest_p50_ms"] = round(percentile([b for _, b in sizes], 50) * 1000, 4)
    return out


def run() -> dict[str, Any]:
    services = env_int("BENCH_SERVICES", 10_000)
    small_services = env_int("BENCH_SERVICES_SMALL", 1_000)
    endpoints = env_int("BENCH_ENDPOINTS", 10)
    events = env_int("BENCH_FOLD_EVENTS", 20_000)
    batch = max(1, env_int("BENCH_FOLD_BATCH", 100))
    changes = max(1, env_int("BENCH_CHANGES", 200))
    warmup = 20

    t0 = time.perf_counter()
    large = Scope(services, endpoints, seed=1)
    small = Scope(small_services, endpoints, seed=2)
    setup_s = time.perf_counter() - t0

    rate, changed = _events_per_second(large, events, batch)

    # Single changes, interleaved so that drift on a shared machine hits both sizes alike.
    large_msgs = large.messages(warmup + changes)
    small_msgs = small.messages(warmup + changes)
    for i in range(warmup):
        large.one_change(large_msgs[i])
        small.one_change(small_msgs[i])
    gc.collect()
    gc_before = [s["collections"] for s in gc.get_stats()]
    t_large: list[tuple[float, float]] = []
    t_small: list[tuple[float, float]] = []
    for i in range(warmup, warmup + changes):
        t_large.append(large.one_change(large_msgs[i]))
        t_small.append(small.one_change(small_msgs[i]))
    gc_during = [s["collections"] - b for s, b in zip(gc.get_stats(), gc_before, strict=True)]
    large.check_equals_full_build()
    small.check_equals_full_build()

    big = _sizes(t_large)
    little = _sizes(t_small)
    params = {
        "value_is": f"p99 ms of one endpoint change (fold + update + commit + digest) at {services} services",
        "baseline_is": f"the same p99 at {small_services} services, interleaved in the same run; "
        "ratio = t(large) / t(small)",
        "services": services,
        "baseline_services": small_services,
        "ingresses": "one per service",
        "endpoints_per_service": endpoints,
        "p50_ms": big["p50_ms"],
        "p99_ms": big["p99_ms"],
        "large": big,
        "small": little,
        "p50_ratio": round(big["p50_ms"] / little["p50_ms"], 3),
        "events_per_s": round(rate),
        "events_per_s_is": f"{events} endpoint changes at {services} services, update + commit + digest "
        f"every {batch} events",
        "events_per_s_batch": batch,
        "events_per_s_resources_changed": changed,
        "resources_large": len(large.translator.table),
        "resources_small": len(small.translator.table),
        "gc_collections_during_samples": gc_during,
        "setup_s_not_timed": round(setup_s, 2),
        "median_ms_large": round(median([a + b for a, b in t_large]) * 1000, 4),
    }
    return write_result(
        NAME,
        value=big["p99_ms"],
        unit="ms",
        baseline=little["p99_ms"],
        budget=BUDGET_RATIO,
        budget_on="ratio",
        # Asserted as the run went (one_change, fold_batch, check_equals_full_build).
        checks={"one_resource_per_change": True, "nothing_rejected": True, "incremental_equals_full": True},
        params=params,
    )
