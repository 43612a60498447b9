"""The short chaos run (`make chaos` runs the full one, bench/chaos.py): one shared cluster and stack,
short lease TTL and holds, one fault of each kind that the stack rides through today.

After each fault: no service exited, every change written is served by Envoy, the ledger head's digest
equals a fresh full list's, the ledger is one chain, CDS and LDS were never empty at Envoy and Envoy
never went back to an older endpoint. Timing is reported (printed), never asserted."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.chaos import faults, run_faults

pytestmark = pytest.mark.slow

LEASE_TTL = 2.0
# Faults held out of the short run, each for a reason given in docs/operating-on-a-cluster.md.
HELD_OUT: set[str] = set()


async def test_the_stack_rides_through_one_fault_of_each_kind(tmp_path: Path) -> None:
    selected = [f for f in faults(hold=2.0, quorum_hold=4.0, lease_ttl=LEASE_TTL) if f.name not in HELD_OUT]
    results = await run_faults(tmp_path, selected, rate=50, services=10, lease_ttl=LEASE_TTL)
    for result in results:
        print(json.dumps(asdict(result)))
    assert [r.fault for r in results] == [f.name for f in selected], "a fault stopped the run"
    broken = [asdict(r) for r in results if not r.ok]
    assert not broken, json.dumps(broken, indent=2)
