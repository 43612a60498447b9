"""Consul at the speed of its protocol (issue 14): an answer with a new index is re-issued at once, so
successive changes of one service are not held back by the rate limit, which only paces answers that
bring nothing new."""

from __future__ import annotations

import asyncio
import logging
import time

from tests.fakes.consul_server import FakeConsul
from tests.watch_consul.conftest import Creds, Sink, config, running
from tests.watch_eureka.registry_restart import registries, time_to_log
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus_watch_consul import ConsulRegistry
from xdsbus_watch_consul.registry import DEFAULT_BURST, DEFAULT_CHURN_INTERVAL

log = logging.getLogger(__name__)

WEB = "web.dc1.consul"
# Well under the 15 s a rate-limited loop waits between requests once its burst is spent.
DEADLINE = 5.0


async def test_successive_changes_of_one_service_each_arrive_at_once(fake: FakeConsul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080)
    sink = Sink()
    # The production rate limit: burst 2, then one request per 15 s.
    reg = ConsulRegistry(config(fake), Creds(), churn_interval=DEFAULT_CHURN_INTERVAL, burst=DEFAULT_BURST)
    async with running(reg, sink):
        for n in range(2, 6):
            fake.register("web", f"web-{n}", f"10.0.0.{n}", 8080)
            visible = time.monotonic()

            def arrived(count: int = n) -> bool:
                return len(sink.state[WEB].endpoints) == count

            await asyncio.wait_for(sink.until(arrived), DEADLINE)
            log.info("change %d reached the sink in %.3fs", n - 1, time.monotonic() - visible)


async def test_immediate_answers_with_the_same_index_are_rate_limited(fake: FakeConsul) -> None:
    fake.register("web", "web-1", "10.0.0.1", 8080)
    sink = Sink()
    reg = ConsulRegistry(config(fake), Creds(), refresh_interval=30.0, churn_interval=0.25, burst=2)
    async with running(reg, sink):
        fake.block = False  # every blocking query now answers at once, unchanged
        fake.register("web", "web-2", "10.0.0.2", 8080)
        await sink.until(lambda: len(sink.state[WEB].endpoints) == 2)
        mark, answers = fake.count("/v1/health/service/web"), sink.answers
        await asyncio.sleep(1.0)  # measured: one request per 0.25 s; not a busy loop
        assert fake.count("/v1/health/service/web") - mark <= 7
        # Unchanged answers publish nothing, but each counts for the source lag of /metrics.
        assert sink.answers - answers >= fake.count("/v1/health/service/web") - mark >= 2


async def test_successive_changes_reach_the_event_log(bus: Bus, fake: FakeConsul) -> None:
    """The same through the registry machinery on nats-server, with the production defaults."""
    events = EventLog(bus)
    fake.register("web", "web-1", "10.0.0.1", 8080)
    entry = {
        "type": "consul",
        "name": "main",
        "domain": "127.0.0.1",
        "port": fake.port,
        "consulDatacenter": "dc1",
    }

    def count(log: EventLog) -> int:
        upserts = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, WEB)
        return len(upserts[-1].body["endpoints"]) if upserts else 0

    async with registries(bus, "watch-consul", {"consul"}, ConsulRegistry, entry):
        await events.wait_for(lambda log: count(log) == 1, "the first resync")
        for n in range(2, 6):
            fake.register("web", f"web-{n}", f"10.0.0.{n}", 8080)

            def arrived(log: EventLog, expected: int = n) -> bool:
                return count(log) == expected

            await time_to_log(events, arrived, f"change {n - 1} of web", DEADLINE)
