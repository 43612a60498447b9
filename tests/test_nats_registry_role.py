"""A registry watcher as its own NATS user (docs/design.md §10): it follows McpBridge, takes its leases,
publishes its registry's services and reports their status with nothing the server refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.fakes.consul_server import FakeConsul
from tests.registry.support import Source, mcpbridge, secret
from tests.watch_consul.test_service import WEB, registry
from tests.watch_file.conftest import EventLog
from xdsbus import status_store
from xdsbus.bus import BusSettings, connect
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.registry.status import STATUS_KIND
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, tool
from xdsbus_dev.nats_users import local_roles


async def test_watch_consul_runs_on_its_own_grants(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", users=local_roles("e2e"))
    server.start()
    bus = await connect(BusSettings(url=server.url, nats=server.options()), name="test")
    try:
        events = EventLog(bus)
        async with FakeConsul(token="s3cret") as consul:
            consul.register("web", "web-1", "10.0.0.1", 8080, tags=["gateway"])
            cluster = Source(bus, "k8s/test", secret_box=SecretBox.from_env())
            await cluster.put(secret("consul-auth", consulToken="s3cret"))
            await cluster.put(mcpbridge(registry(consul.port)))
            service = Service(
                [tool("xdsbus-watch-consul"), "--nats-url", server.url, "--instance-id", "t1"],
                tmp_path / "watch-consul.log",
                env=server.client_env("watch-consul"),
            ).start()
            try:
                await events.wait_for(
                    lambda log: log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, WEB), "web published"
                )

                async def reported() -> bool:
                    return await status_store.read(bus, STATUS_KIND, "consul/main", "consul/main") is not None

                await eventually(reported, what="the registry's status entry")
            finally:
                code = await asyncio.to_thread(service.terminate)
        assert code == 0, service.output()
        assert "Violation" not in server.output()
        assert "permission" not in service.output()
    finally:
        await bus.close()
        server.stop()
