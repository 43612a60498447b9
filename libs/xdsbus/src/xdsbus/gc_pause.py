"""Pausing Python's cyclic garbage collector while large acyclic structures are built or replaced."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside (nested uses leave it to the outermost).

    Decoding a checkpoint, folding events and building a translation allocate containers by the
    hundred thousand, and the collector then runs full collections over the whole heap every few
    thousand events: a quarter of a fold, and a checkpoint's decode took 100-170 ms instead of 17 ms
    once a process held a few states (bench/replay_1m_recent.py). What they build is acyclic (decoded
    msgpack, Structs), so reference counting frees what they drop; cycles made meanwhile wait for the
    next collection after the pause."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


# Allocations between young collections, and collections between older ones, for a process that holds
# hundreds of thousands of long-lived containers (Python's defaults: 700, 10, 10).
LARGE_HEAP_THRESHOLDS = (50_000, 20, 100)


def tune_for_large_heaps() -> None:
    """Collect less often, for a process whose state is a large, mostly acyclic heap (the builder's
    folded state, a watcher's bodies of every object): with the default thresholds the collector
    rescans that heap every few thousand allocations (measured: a quarter of the builder's fold
    throughput, and 1.3 of watch-k8s's 4.8 CPU-s publishing 60k objects in bench/cold_load.py)."""
    gc.set_threshold(*LARGE_HEAP_THRESHOLDS)
