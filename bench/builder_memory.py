"""builder_memory: the builder's memory per endpoint at 20k Ingresses and 100k endpoints.

Workload: bench/workload.py's objects, BENCH_MEMORY_SERVICES (20k) Services each with one EndpointSlice
of BENCH_MEMORY_ENDPOINTS (5) ready endpoints, and BENCH_MEMORY_INGRESSES (20k) Ingresses (one host,
one path each): 100k endpoints. Each measurement runs in a fresh process (multiprocessing spawn), so
nothing another one allocated is counted.

value     bytes per endpoint the builder holds once it has folded every object and built and committed
          every resource: Python heap blocks alive (tracemalloc) in the fold state, the translator (its
          indexes, models, statuses) and the resource table with the committed set, divided by the
          endpoints. What a builder holds between versions, not its transient peak: the version's
          statuses are taken, as the builder takes them to publish after every version.
baseline  the budget of docs/design.md §8 itself, 1 KiB per endpoint (not measured): ratio = value / 1024.
params    the same split by part (fold state; translator without the table's bodies; the serialized
          bodies themselves), and the RSS growth of a process doing the same without tracemalloc (what
          the operating system sees, allocator slack included) per endpoint.

Checks: the translator built every cluster and ClusterLoadAssignment, the assignments hold every
endpoint, and the route configuration every host.
"""

from __future__ import annotations

import gc
import multiprocessing
import tracemalloc
from typing import Any

from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2

from bench import workload
from bench.results_io import env_int, write_result
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, ROUTE
from xdsbus.fold.state import FoldState, apply
from xdsbus.translate.translator import Translator

NAME = "builder_memory"
BUDGET_BYTES = 1024.0
PARAMS = {
    "BENCH_MEMORY_SERVICES": (20_000, "Services, each with one EndpointSlice"),
    "BENCH_MEMORY_ENDPOINTS": (5, "ready endpoints per EndpointSlice"),
    "BENCH_MEMORY_INGRESSES": (20_000, "Ingresses (one host, one path each)"),
}


def _rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def _load(services: int, endpoints: int, ingresses: int) -> tuple[FoldState, Translator]:
    """Fold every object and build and commit every resource, as a builder holds them between versions."""
    state = FoldState()
    for seq, event in enumerate(workload.initial_events(services, endpoints, ingresses), start=1):
        apply(state, seq, event)
    translator = Translator()
    _build(state, translator)
    return state, translator


def _build(state: FoldState, translator: Translator) -> None:
    """A full build and a version, as the builder makes one: digest, commit, and the statuses taken to
    publish (the builder takes them after every version; untaken, the changed set held every object)."""
    translator.full_build(state)
    translator.table.digest()
    translator.table.commit()
    translator.take_status_changes()


def _check(translator: Translator, services: int, endpoints: int, ingresses: int) -> None:
    items = list(translator.table.items())
    clusters = [r for k, r in items if k.type_url == CLUSTER]
    assignments = [r for k, r in items if k.type_url == ENDPOINT]
    if len(clusters) != services or len(assignments) != services:
        raise AssertionError(f"{len(clusters)} clusters, {len(assignments)} assignments, not {services}")
    held = 0
    for resource in assignments:
        cla = endpoint_pb2.ClusterLoadAssignment.FromString(any_pb2.Any.FromString(resource.body).value)
        held += sum(len(group.lb_endpoints) for group in cla.endpoints)
    if held != services * endpoints:
        raise AssertionError(f"the assignments hold {held} endpoints, not {services * endpoints}")
    hosts = 0
    for key, resource in items:
        if key.type_url == ROUTE:
            config = route_pb2.RouteConfiguration.FromString(any_pb2.Any.FromString(resource.body).value)
            hosts += len(config.virtual_hosts)
    if hosts != min(services, ingresses):
        raise AssertionError(f"the route configurations hold {hosts} hosts, not {min(services, ingresses)}")


def _traced(services: int, endpoints: int, ingresses: int) -> dict[str, int]:
    """Heap bytes alive per part, traced from before the first event to after the commit."""
    gc.collect()
    tracemalloc.start()
    state = FoldState()
    for seq, event in enumerate(workload.initial_events(services, endpoints, ingresses), start=1):
        apply(state, seq, event)
    gc.collect()
    after_fold = tracemalloc.get_traced_memory()[0]
    translator = Translator()
    _build(state, translator)
    gc.collect()
    total = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    bodies = sum(len(resource.body) for _, resource in translator.table.items())
    _check(translator, services, endpoints, ingresses)
    return {"total": total, "state": after_fold, "translator": total - after_fold, "bodies": bodies}


def _rss(services: int, endpoints: int, ingresses: int) -> dict[str, int]:
    """RSS before and after the same load, without tracemalloc."""
    gc.collect()
    before = _rss_bytes()
    state, translator = _load(services, endpoints, ingresses)
    gc.collect()
    after = _rss_bytes()
    del state, translator
    return {"before": before, "after": after}


def _in_child(what: str, sizes: tuple[int, int, int]) -> dict[str, int]:
    context = multiprocessing.get_context("spawn")
    with context.Pool(1) as pool:
        result: dict[str, int] = pool.apply(_traced if what == "traced" else _rss, sizes)
    return result


def run() -> dict[str, Any]:
    services = env_int("BENCH_MEMORY_SERVICES", 20_000)
    endpoints = env_int("BENCH_MEMORY_ENDPOINTS", 5)
    ingresses = env_int("BENCH_MEMORY_INGRESSES", 20_000)
    sizes = (services, endpoints, ingresses)
    count = services * endpoints
    traced = _in_child("traced", sizes)
    rss = _in_child("rss", sizes)

    def per(n: int) -> float:
        return round(n / count, 1)

    params = {
        "value_is": "bytes per endpoint of Python heap alive (tracemalloc) in the fold state, the translator "
        "and its resource table after folding every object and a full build and commit",
        "baseline_is": "the budget of docs/design.md §8 itself (1 KiB per endpoint), not measured",
        "services": services,
        "endpoints_per_service": endpoints,
        "endpoints": count,
        "ingresses": ingresses,
        "traced_bytes": traced["total"],
        "per_endpoint": {
            "fold_state": per(traced["state"]),
            "translator": per(traced["translator"] - traced["bodies"]),
            "resource_bodies": per(traced["bodies"]),
        },
        "per_endpoint_is": "the value split: the fold state (event bodies as folded), the translator's "
        "indexes, models and statuses and the table's bookkeeping, and the serialized resource bodies",
        "rss_growth_bytes": rss["after"] - rss["before"],
        "rss_growth_per_endpoint": per(rss["after"] - rss["before"]),
        "rss_after_bytes": rss["after"],
    }
    return write_result(
        NAME,
        value=per(traced["total"]),
        unit="B",
        baseline=BUDGET_BYTES,
        budget=BUDGET_BYTES,
        budget_on="value",
        # Asserted in _check (in the traced child): reaching here means they held.
        checks={"every_cluster_and_assignment": True, "every_endpoint": True, "every_host": True},
        params=params,
    )
