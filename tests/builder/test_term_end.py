"""A leader that loses its lease ends its term at once, wherever it waits (issue 14).

Found by `make chaos`: a builder whose lease renewals failed through an election declared the lease
lost, then neither stepped down nor waited for the lease again for minutes, because its leader was
waiting without a deadline. The leader now runs as a task that is cancelled when the lease is lost.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.builder.support import LEASE, wait_for_caught_up
from tests.support.objects import service
from tests.support.sources import ScriptedSource
from xdsbus.bus import LEDGER_STREAM, Bus
from xdsbus.ledger.publisher import PUBLISH_RETRY_WITHIN
from xdsbus_builder.builder import Builder, BuilderConfig
from xdsbus_builder.figures import BuilderFigures
from xdsbus_dev.harness.processes import eventually


async def test_a_leader_steps_down_when_its_lease_is_taken_while_a_publish_is_retried(
    bus: Bus, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    source = ScriptedSource(bus)
    figures = BuilderFigures("default")
    config = BuilderConfig(instance_id="leader", debounce_quiet=0.02, debounce_max=0.2, lease_ttl=6.0)
    stop = asyncio.Event()
    builder = asyncio.create_task(Builder(bus, config, figures=figures).run(stop))
    try:
        await source.put(service("echo"))
        await wait_for_caught_up(bus)
        assert figures.leading

        # The ledger stream gone: the leader's next publish finds no responders, a transient fault it
        # retries for PUBLISH_RETRY_WITHIN (as it does while the stream elects a leader).
        await bus.js.delete_stream(LEDGER_STREAM)
        await source.put(service("other"))

        async def retrying() -> bool:
            return any("publishing default:" in r.getMessage() for r in caplog.records)

        await eventually(retrying, timeout=10, what="the leader to retry its publish")
        # Another instance holds the lease now (as a standby does after an expiry): the next renewal is
        # refused, and the leader must stand by long before its publish gives up.
        await bus.leases.put(LEASE, b"standby")

        async def stood_down() -> bool:
            return not figures.leading and any(
                "stepping down: lease lost" in r.getMessage() for r in caplog.records
            )

        await eventually(stood_down, timeout=PUBLISH_RETRY_WITHIN / 4, what="the leader to step down")
        assert not builder.done()
    finally:
        stop.set()
        await asyncio.wait_for(builder, 15)
