"""After the Consul agent restarts, the first change reaches the event log without waiting a backoff step
the outage grew (issue 14): a refused connection is retried within a second."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fakes.consul_server import FakeConsul
from tests.watch_eureka.registry_restart import failures_logged, registries, time_to_log
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus_watch_consul import ConsulRegistry

WEB = "web.dc1.consul"
DEADLINE = 6.0


def addresses(log: EventLog) -> list[str]:
    upserts = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, WEB)
    return [e["address"] for e in upserts[-1].body["endpoints"]] if upserts else []


async def test_first_change_after_a_restart(
    bus: Bus, fake: FakeConsul, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    events = EventLog(bus)
    fake.register("web", "web-1", "10.0.0.1", 8080)
    entry: dict[str, Any] = {
        "type": "consul",
        "name": "main",
        "domain": "127.0.0.1",
        "port": fake.port,
        "consulDatacenter": "dc1",
    }
    async with registries(bus, "watch-consul", {"consul"}, ConsulRegistry, entry):
        await events.wait_for(lambda log: addresses(log) == ["10.0.0.1"], "the first resync")
        caplog.clear()
        await fake.go_down()
        await failures_logged(caplog)
        await fake.come_back()
        fake.register("web", "web-2", "10.0.0.2", 8080)
        await time_to_log(
            events,
            lambda log: addresses(log) == ["10.0.0.1", "10.0.0.2"],
            "web-2 after the restart",
            DEADLINE,
        )
    assert events.of(Op.DELETE) == []
