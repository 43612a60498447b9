"""After the Eureka server restarts, the first change reaches the event log without waiting a backoff
step the outage grew (issue 14): a refused connection is retried within a second, and the new run's
full fetch publishes what changed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fakes.eureka_server import FakeEureka
from tests.watch_eureka.registry_restart import failures_logged, registries, time_to_log
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.registry.api import Credentials, Registry
from xdsbus_watch_eureka.registry import EurekaRegistry

ORDERS = "ORDER-SERVICE.eureka"
POLL = 1.0  # as the chaos suite polls Eureka
DEADLINE = 6.0


def factory(config: RegistryConfig, credentials: Credentials) -> Registry:
    return EurekaRegistry(config, credentials, poll_interval=POLL)


def addresses(log: EventLog) -> list[str]:
    upserts = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, ORDERS)
    return [e["address"] for e in upserts[-1].body["endpoints"]] if upserts else []


async def test_first_change_after_a_restart(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    events = EventLog(bus)
    async with FakeEureka() as eureka:
        eureka.register("order-service", "o1", "10.0.0.1", 8080)
        entry: dict[str, Any] = {"type": "eureka", "name": "main", "domain": "127.0.0.1", "port": eureka.port}
        async with registries(bus, "watch-eureka", {"eureka"}, factory, entry):
            await events.wait_for(lambda log: addresses(log) == ["10.0.0.1"], "the first resync")
            caplog.clear()
            await eureka.go_down()
            await failures_logged(caplog)
            await eureka.come_back()
            eureka.register("order-service", "o2", "10.0.0.2", 8080)
            await time_to_log(
                events,
                lambda log: addresses(log) == ["10.0.0.1", "10.0.0.2"],
                "o2 after the restart",
                DEADLINE,
            )
        assert events.of(Op.DELETE) == []
