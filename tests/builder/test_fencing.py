"""Fencing with term records (docs/design.md §5, issue 12 point 10), with real `xdsbus-builder` processes:
a leader paused (SIGSTOP) past its lease and resumed after its successor published its term record gets
nothing accepted, steps down and stands by, while the successor goes on publishing."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.builder.support import (
    FAST_FLAGS,
    SCOPE,
    Marker,
    assert_chain,
    builder_process,
    lease_holder,
    records,
    versions_logged,
    wait_for_caught_up,
    wait_for_version,
)
from xdsbus.bus import Bus
from xdsbus.ledger import reader
from xdsbus.ledger.reader import LedgerEntry
from xdsbus_dev.harness.processes import Service, eventually


async def _term_of(bus: Bus, holder: str) -> LedgerEntry | None:
    """The newest term record of `holder` on the ledger subject."""
    found = None
    async for entry in reader.records(bus, SCOPE):
        if reader.is_term(entry.record) and entry.record.term.holder == holder:
            found = entry
    return found


async def _stood_by(builder: Service, times: int) -> bool:
    """Whether `builder` has waited for the lease `times` times (once per standby)."""
    return builder.output().count("waiting for the lease of scope default") >= times


async def _stepped_down(builder: Service) -> bool:
    return "stepping down" in builder.output()


async def test_a_paused_leader_gets_nothing_accepted_after_its_successors_term(
    nats_server, bus_with_lease_ttl, tmp_path: Path
):
    ttl = 2.0
    bus = await bus_with_lease_ttl(ttl)
    # The leases expire after `ttl` (a bucket setting), but the paused leader renews only every 20 s: when
    # it wakes up it publishes before its renewal could tell it the lease is gone, so only the fence
    # stops it. The successor waits 3 s before publishing what it folds: until then its term record is
    # the only thing it has written, so that is what refuses the former leader.
    active = builder_process(nats_server.url, tmp_path, "active", *FAST_FLAGS, "--lease-ttl", "60")
    standby = builder_process(
        nats_server.url,
        tmp_path,
        "standby",
        *FAST_FLAGS,
        "--lease-ttl",
        str(ttl),
        "--debounce-quiet",
        "3",
        "--debounce-max",
        "3",
    )
    marker = Marker(bus)
    try:
        active.start()
        await eventually(lambda: _term_of(bus, "active"), what="the first builder's term record")
        await marker.setup()
        before = await wait_for_caught_up(bus)
        assert before.version in versions_logged(active.output())

        active.proc.send_signal(signal.SIGSTOP)
        standby.start()
        taken = await eventually(
            lambda: _term_of(bus, "standby"), timeout=3 * ttl + 4, what="the successor's term record"
        )
        assert taken.record.term.head_version == before.version
        assert await lease_holder(bus) == "standby"

        # An event both fold: the paused leader finds it in its own consumer when it wakes up.
        woken = await marker.bump()
        active.proc.send_signal(signal.SIGCONT)
        await eventually(lambda: _stepped_down(active), what="the woken builder to step down")
        await eventually(lambda: _stood_by(active, 2), what="the woken builder to stand by")
        await wait_for_version(bus, woken)
        final = await wait_for_version(bus, await marker.bump())
    finally:
        if active.proc is not None and active.proc.poll() is None:
            active.proc.send_signal(signal.SIGCONT)
        active.terminate()
        standby.terminate()

    # It tried, and JetStream refused it: its expected last subject sequence was behind the term record.
    assert "written by another builder" in active.output()
    recs = await records(bus)
    assert_chain(recs)
    after_term = [e.record async for e in reader.records(bus, SCOPE) if e.stream_seq > taken.stream_seq]
    by_standby = versions_logged(standby.output())
    # Nothing after the successor's term record is the former leader's: no term record of its own, and
    # every version is one the successor published.
    assert not [r for r in after_term if reader.is_term(r)], "a term record after the successor's"
    assert [r.version for r in after_term] == by_standby
    assert woken in by_standby and final.version == by_standby[-1]
    assert set(versions_logged(active.output())) <= {r.version for r in recs if r.version <= before.version}
