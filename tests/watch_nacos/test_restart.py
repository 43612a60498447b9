"""After the Nacos server restarts, the first change reaches the event log without waiting a backoff step
the outage grew, nor the SDK's 30 s re-subscription timer (issue 14): the lost connection ends the run,
a refused connection is retried within a second, and the new run subscribes afresh."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.fakes.nacos_server import FakeNacos
from tests.watch_eureka.registry_restart import failures_logged, registries, time_to_log
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus_watch_nacos.registry import NacosRegistry

ORDERS = "orders.DEFAULT-GROUP.public.nacos"
DEADLINE = 8.0


def addresses(log: EventLog) -> list[str]:
    upserts = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, ORDERS)
    return [e["address"] for e in upserts[-1].body["endpoints"]] if upserts else []


async def test_first_change_after_a_restart(bus: Bus, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    events = EventLog(bus)
    nacos = FakeNacos()
    await nacos.start()
    try:
        nacos.register("orders", "10.0.0.1", 8080)
        entry: dict[str, Any] = {
            "type": "nacos2",
            "name": "main",
            "domain": "127.0.0.1",
            "port": nacos.http_port,
            "nacosNamespaceId": "public",
            "nacosGroups": ["DEFAULT_GROUP"],
        }
        async with registries(bus, "watch-nacos", {"nacos2"}, NacosRegistry, entry):
            await events.wait_for(lambda log: addresses(log) == ["10.0.0.1"], "the first resync")
            caplog.clear()
            await nacos.go_down()
            await failures_logged(caplog)
            await nacos.come_back()
            nacos.register("orders", "10.0.0.2", 8080)
            await time_to_log(
                events,
                lambda log: addresses(log) == ["10.0.0.1", "10.0.0.2"],
                "10.0.0.2 after the restart",
                DEADLINE,
            )
        assert events.of(Op.DELETE) == []
    finally:
        await nacos.stop()
