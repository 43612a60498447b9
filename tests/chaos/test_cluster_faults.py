"""The short chaos run (`make chaos` runs the full one, bench/chaos.py): one shared cluster and stack
with five sources under load (watch-file, the Kubernetes API server fake with watch-k8s, the Eureka,
Consul and Nacos fakes with their watchers), a short lease TTL, 1 s pings and short holds, one fault of
each kind that the stack rides through, the restarts of the API server (410 on the next watch) and of
each registry among them.

After each fault: no service exited, every change of every source is served by Envoy, the ledger head's
digest equals that of fresh full lists of the five sources, the ledger is one chain, CDS and LDS were
never empty at Envoy and Envoy never went back to an older endpoint. Timing, with a restarted source's
first change to Envoy (`first_change_ms`), is reported (printed), never asserted."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest

from bench.chaos import ChaosSettings, faults, run_faults

pytestmark = pytest.mark.slow

# A source is down for 1.5 s: its watcher still sees its connections fail and be refused (Eureka's
# poll, every second, meets the outage at least once).
SHORT = ChaosSettings(lease_ttl=2.0, ping_interval=1.0, hold=2.0, quorum_hold=4.0, source_hold=1.5)


async def test_the_stack_rides_through_one_fault_of_each_kind(tmp_path: Path) -> None:
    results = await run_faults(tmp_path, SHORT)
    for result in results:
        print(json.dumps(asdict(result)))
    broken = [asdict(r) for r in results if not r.ok]
    assert not broken, json.dumps(broken, indent=2)
    expected = [f.name for f in faults(1, 1, 1, 1)]
    assert [r.fault for r in results] == expected
