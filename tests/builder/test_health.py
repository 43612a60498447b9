"""The builder's /ready and /metrics (docs/design.md §9): a standby that could lead is ready; a builder
over a gap in the event log is not, and says why; the leader shows its lease, version and backlog."""

from __future__ import annotations

import pytest
from nats.js import api

from tests.builder.support import FAST_FLAGS, SCOPE, builder_process, wait_for_caught_up
from tests.builder.test_gaps import _delete_checkpoints, _publish_victim
from tests.builder.test_retention import _events, _just_after, _save_checkpoint
from tests.test_health import answer, http_get, sample
from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.reading import last_event_seq
from xdsbus_builder.figures import BuilderFigures
from xdsbus_builder.retention import DAY, Retention
from xdsbus_dev.harness.processes import Service, eventually, free_port

LEASE_TTL = 1.5
FLAGS = (*FAST_FLAGS, "--lease-ttl", str(LEASE_TTL))


def with_health(service: Service) -> int:
    """Give `service` a health port on loopback; returns it."""
    port = free_port()
    service.env["XDSBUS_HTTP_LISTEN"] = f"127.0.0.1:{port}"
    return port


async def metric(port: int, name: str, **labels: str) -> float | None:
    got = await answer(port, "/metrics")
    return None if got is None else sample(got[1], name, **labels)


@pytest.mark.slow
async def test_a_standby_is_ready_and_the_leader_shows_its_figures(nats_server, bus_with_lease_ttl, tmp_path):
    bus = await bus_with_lease_ttl(LEASE_TTL)
    leader = builder_process(nats_server.url, tmp_path, "leader", *FLAGS)
    standby = builder_process(nats_server.url, tmp_path, "standby", *FLAGS)
    leader_port, standby_port = with_health(leader), with_health(standby)
    try:
        leader.start()

        async def leading() -> bool:
            return await metric(leader_port, "xdsbus_builder_lease_holder", scope=SCOPE) == 1

        await eventually(leading, what=f"the first builder leading:\n{leader.output()}")
        standby.start()

        async def standing_by() -> bool:
            return await metric(standby_port, "xdsbus_builder_lease_holder", scope=SCOPE) == 0

        await eventually(standing_by, what=f"the second builder standing by:\n{standby.output()}")

        async def standby_ready() -> bool:
            # The lease gauge reads 0 from the start: ready comes once the standby is connected.
            return await http_get(standby_port, "/ready") == (200, "ready\n")

        await eventually(standby_ready, what=f"the standby ready:\n{standby.output()}")
        assert await http_get(leader_port, "/ready") == (200, "ready\n")

        await _publish_victim(bus)
        head = await wait_for_caught_up(bus)

        async def version_shown() -> bool:
            return await metric(leader_port, "xdsbus_builder_version", scope=SCOPE) == head.version

        await eventually(version_shown, what="the leader's version on /metrics")
        metrics = (await http_get(leader_port, "/metrics"))[1]
        assert (sample(metrics, "xdsbus_builder_lease_term", scope=SCOPE) or 0) > 0
        assert sample(metrics, "xdsbus_builder_version_age_seconds", scope=SCOPE) is not None
        assert sample(metrics, "xdsbus_builder_fold_backlog", scope=SCOPE) is not None
        assert sample(metrics, "xdsbus_builder_blocked", scope=SCOPE, reason="gap") == 0
    finally:
        leader.terminate()
        standby.terminate()


@pytest.mark.slow
async def test_a_builder_over_a_gap_is_not_ready(nats_server, bus_with_lease_ttl, tmp_path):
    bus = await bus_with_lease_ttl(LEASE_TTL)
    first = builder_process(nats_server.url, tmp_path, "first", *FLAGS)
    second = builder_process(nats_server.url, tmp_path, "second", *FLAGS)
    port = with_health(second)
    try:
        first.start()
        marker, _ = await _publish_victim(bus)
        first.terminate()
        await _delete_checkpoints(bus)
        await bus.js.purge_stream(EVENTS_STREAM, seq=await last_event_seq(bus))

        second.start()
        await marker.bump()

        async def not_ready() -> str | None:
            got = await answer(port, "/ready")
            return got[1] if got is not None and got[0] == 503 and "missing" in got[1] else None

        reason = await eventually(not_ready, what=f"not ready over the gap:\n{second.output()}")
        assert "publishing stopped" in reason
        assert await metric(port, "xdsbus_builder_blocked", scope=SCOPE, reason="gap") == 1
        assert (await http_get(port, "/live"))[0] == 200
    finally:
        first.terminate()
        second.terminate()


async def test_a_full_event_log_blocks_readiness_until_there_is_room(bus: Bus) -> None:
    """The retention alarm that says new events are refused (docs/design.md §4) fails the builder's
    /ready check; a checkpoint with room again clears it."""
    await _events(bus, 40)
    info = await bus.js.stream_info(EVENTS_STREAM)
    config = info.config
    config.max_bytes = int(info.state.bytes * 1.05)
    config.discard = api.DiscardPolicy.NEW
    await bus.js.update_stream(config)
    # The only checkpoint is old: its tail is nearly the whole log.
    await _save_checkpoint(bus, SCOPE, 2)
    retention = Retention(bus, SCOPE, keep_newest=10, window=30 * DAY)
    figures = BuilderFigures(SCOPE)
    assert figures.blocked() is None
    await retention.after_checkpoint(await _just_after(bus, SCOPE))
    figures.log_full = retention.full
    assert figures.blocked() is not None and "new events are refused" in figures.blocked()

    config.max_bytes = info.state.bytes * 10
    await bus.js.update_stream(config)
    await _save_checkpoint(bus, SCOPE, info.state.last_seq)
    await retention.after_checkpoint(await _just_after(bus, SCOPE))
    figures.log_full = retention.full
    assert figures.blocked() is None
