"""Giving the C heap's free memory back to the system after a large switch.

Loading a scope builds large transient structures (the ledger's resource set, the fetched bodies' wire
forms) next to the snapshot that stays. Python's allocator hands what it frees back to glibc's malloc,
which keeps the free pages mapped: the edge's RSS would stay at its peak. `malloc_trim(0)` returns every
whole free page to the system (a few milliseconds for an edge's heap). Elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

# Resources a switch must change before the heap is trimmed after it: a load or a reload, not a push.
TRIM_AFTER_CHANGES = 1_000


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    result: Callable[[int], int] = trim
    return result


_TRIM = _malloc_trim()


def release_free_memory() -> bool:
    """Return the C heap's free pages to the system; False where that cannot be done."""
    if _TRIM is None:
        return False
    _TRIM(0)
    return True
