"""Two `xdsbus-builder` instances for one scope: only the lease holder publishes; when it dies the standby
takes over within the lease TTL and continues the same ledger; on SIGTERM the holder hands over at once."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from tests.builder.support import (
    FAST_FLAGS,
    SCOPE,
    Marker,
    assert_chain,
    builder_process,
    cluster,
    head_version,
    lease_holder,
    records,
    resources_at,
    translate_whole_log,
    versions_logged,
    wait_for_caught_up,
    wait_for_version,
)
from tests.support.objects import endpoint_slice, service
from tests.support.sources import ScriptedSource
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.replay import replay_to
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_dev.harness.processes import Service, eventually


async def _holds(bus, instance: str) -> bool:
    return await lease_holder(bus) == instance


async def _standing_by(builder: Service) -> bool:
    return "waiting for the lease of scope default" in builder.output()


async def test_standby_takes_over_when_the_active_builder_is_killed(
    nats_server, bus_with_lease_ttl, tmp_path: Path
):
    ttl = 2.0
    bus = await bus_with_lease_ttl(ttl)
    flags = [*FAST_FLAGS, "--lease-ttl", str(ttl)]
    active = builder_process(nats_server.url, tmp_path, "active", *flags)
    standby = builder_process(nats_server.url, tmp_path, "standby", *flags)
    src = ScriptedSource(bus)
    marker = Marker(bus)
    try:
        active.start()
        await eventually(lambda: _holds(bus, "active"), what="the first builder to take the lease")
        standby.start()
        await eventually(lambda: _standing_by(standby), what="the second builder to stand by")

        await marker.setup()
        for name in ("a", "b", "c", "d"):
            await src.put(service(name))
            await src.put(endpoint_slice(name, ["10.0.0.1"]))
            await wait_for_caught_up(bus)
        assert await lease_holder(bus) == "active"
        assert "acquired by standby" not in standby.output()
        assert versions_logged(standby.output()) == [], "the standby published without the lease"
        before = await records(bus)
        last_before = before[-1].version

        active.kill9()
        # Changes keep coming while nobody leads; the new leader folds them into its first version.
        await src.put(service("e"))
        await src.remove("Service", "default/a")
        # The lease expires within the TTL; the standby retries every TTL/4.
        taken = await wait_for_version(bus, await marker.bump(), timeout=2 * ttl + 4)
        assert await lease_holder(bus) == "standby"

        await src.put(service("f"))
        final = await wait_for_caught_up(bus)
    finally:
        active.terminate()
        standby.terminate()

    recs = await records(bus)
    assert_chain(recs)
    assert [r.version for r in recs[: len(before)]] == [r.version for r in before], "history was rewritten"
    by_active = versions_logged(active.output())
    by_standby = versions_logged(standby.output())
    # Everything after the kill is the standby's, and it continues from the last version before the kill.
    assert by_standby == [r.version for r in recs if r.version > last_before]
    assert taken.version in by_standby
    assert recs[len(before)].parent == last_before
    assert set(by_active) <= {r.version for r in before}
    assert max(by_active) < min(by_standby)
    assert final.version == recs[-1].version

    clusters = {k.name for k in await resources_at(bus, taken.version)}
    assert cluster("e") in clusters and cluster("a") not in clusters


async def test_sigterm_hands_the_lease_over_at_once(nats_server, bus_with_lease_ttl, tmp_path: Path):
    # A long TTL: if the lease were left to expire, the standby could not take over within the test.
    ttl = 12.0
    bus = await bus_with_lease_ttl(ttl)
    flags = [*FAST_FLAGS, "--lease-ttl", str(ttl)]
    active = builder_process(nats_server.url, tmp_path, "active", *flags)
    standby = builder_process(nats_server.url, tmp_path, "standby", *flags)
    marker = Marker(bus)
    try:
        active.start()
        await eventually(lambda: _holds(bus, "active"), what="the first builder to take the lease")
        standby.start()
        await eventually(lambda: _standing_by(standby), what="the second builder to stand by")
        await marker.setup()
        before = await wait_for_caught_up(bus)

        assert active.terminate() == 0, active.output()
        # Released before exiting, not left to expire: nobody holds it, or the standby already does.
        assert await lease_holder(bus) in (None, "standby")

        # The standby retries every TTL/4 (3 s): well before the lease could have expired.
        after = await wait_for_version(bus, await marker.bump(), timeout=ttl - 4)
        assert await lease_holder(bus) == "standby"
    finally:
        active.terminate()
        standby.terminate()
    assert "SIGTERM received: stopping" in active.output()
    assert versions_logged(standby.output()) == [after.version]
    recs = await records(bus)
    assert_chain(recs)
    assert recs[-1].parent == before.version
    assert await head_version(bus) == after.version


async def test_a_paused_leader_that_wakes_up_cannot_disturb_the_new_one(
    nats_server, bus_with_lease_ttl, tmp_path: Path
):
    """The README's paused process: the active builder stops (SIGSTOP) past its lease, the standby takes
    over, and the old one wakes up (SIGCONT) while events are arriving. It must not publish, and it must
    not take events away from the new leader: every version is still exactly what replay computes."""
    ttl = 2.0
    bus = await bus_with_lease_ttl(ttl)
    flags = [*FAST_FLAGS, "--lease-ttl", str(ttl)]
    active = builder_process(nats_server.url, tmp_path, "active", *flags)
    standby = builder_process(nats_server.url, tmp_path, "standby", *flags)
    marker = Marker(bus)
    src = ScriptedSource(bus)

    async def produce(count: int) -> None:
        # Every event adds a Service that stays: an event the new leader never folds is a missing cluster.
        for i in range(count):
            await src.put(service(f"p{i}"))
            await asyncio.sleep(0.002)  # pacing, so events keep arriving while the old leader wakes up

    try:
        active.start()
        await eventually(lambda: _holds(bus, "active"), what="the first builder to take the lease")
        standby.start()
        await eventually(lambda: _standing_by(standby), what="the second builder to stand by")
        await marker.setup()
        before = await wait_for_caught_up(bus)

        active.proc.send_signal(signal.SIGSTOP)
        await eventually(lambda: _holds(bus, "standby"), timeout=3 * ttl + 4, what="the standby to lead")
        producing = asyncio.create_task(produce(200))
        await eventually(lambda: _head_beyond(bus, before.version), what="the new leader to publish")
        active.proc.send_signal(signal.SIGCONT)
        await producing
        final = await wait_for_version(bus, await marker.bump(), timeout=20)
        await eventually(lambda: _stepped_down(active), what="the woken builder to step down")
    finally:
        if active.proc is not None and active.proc.poll() is None:
            active.proc.send_signal(signal.SIGCONT)
        active.terminate()
        standby.terminate()

    recs = await records(bus)
    assert_chain(recs)
    assert {v for v in versions_logged(active.output())} <= {
        r.version for r in recs if r.version <= before.version
    }
    settings = TranslatorSettings.parse(final.translator_version)
    for rec in recs:
        result, _ = await replay_to(bus, SCOPE, rec.version, settings)
        assert result.digest == rec.digest, f"version {rec.version} differs from its replay"
    fresh = await translate_whole_log(bus, final.version, settings)
    head_clusters = {k.name for k in await resources_at(bus, final.version) if k.type_url == CLUSTER}
    lost = sorted({k.name for k, _ in fresh.table.items() if k.type_url == CLUSTER} - head_clusters)
    assert not lost, f"the new leader never folded the events of {lost}"
    assert fresh.table.digest() == final.digest


async def _head_beyond(bus, version: int) -> bool:
    return await head_version(bus) > version


async def _stepped_down(builder: Service) -> bool:
    out = builder.output()
    return "lost by active" in out or "stepping down" in out
