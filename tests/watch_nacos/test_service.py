"""`xdsbus-watch-nacos` as a real process: an McpBridge on NATS names the fake Nacos (with credentials from
a sealed Secret), whose services arrive in the event log as RegistryService events of source `nacos2/main`;
pushes follow; a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.fakes.nacos_server import FakeNacos
from tests.registry.support import Source, mcpbridge, secret
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import NatsServer, Service, tool

ORDERS = "orders.DEFAULT-GROUP.public.nacos"


def endpoints(log: EventLog, hostname: str) -> list[tuple[str, int, int, bool]]:
    """The endpoints of the last upsert of `hostname`."""
    (*_, last) = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, hostname)
    return [
        (e["address"], e["port"], e.get("weight", 1), e.get("healthy", True)) for e in last.body["endpoints"]
    ]


def registry(port: int) -> dict[str, Any]:
    return {
        "type": "nacos2",
        "name": "main",
        "domain": "127.0.0.1",
        "port": port,
        "nacosNamespaceId": "public",
        "nacosGroups": ["DEFAULT_GROUP"],
        "authSecretName": "nacos-auth",
    }


async def test_service_publishes_nacos_services(tmp_path: Path, nats_server: NatsServer, bus: Bus) -> None:
    events = EventLog(bus)
    nacos = FakeNacos(username="nacos", password="s3cret")
    await nacos.start()
    try:
        nacos.register("orders", "10.0.0.1", 8080, weight=2.0, metadata={"protocol": "grpc"})
        cluster = Source(bus, "k8s/test", secret_box=SecretBox.from_env())
        await cluster.put(secret("nacos-auth", nacosUsername="nacos", nacosPassword="s3cret"))
        await cluster.put(mcpbridge(registry(nacos.http_port)))
        service = Service(
            [tool("xdsbus-watch-nacos"), "--nats-url", nats_server.url, "--instance-id", "t1"],
            tmp_path / "watch-nacos.log",
        ).start()
        try:
            await events.wait_for(
                lambda log: [e for e in log.of(Op.SYNC_END) if e.source == "nacos2/main"],
                "the first resync of nacos2/main",
            )
            (first,) = events.of(Op.UPSERT, REGISTRY_SERVICE_KIND, ORDERS)
            assert first.source == "nacos2/main"
            assert (first.body["port"], first.body["protocol"], first.body["registry_type"]) == (
                8080,
                "GRPC",
                "nacos2",
            )
            assert endpoints(events, ORDERS) == [("10.0.0.1", 8080, 2, True)]
            assert nacos.logins and nacos.logins[0]["username"] == "nacos"

            # Instance pushes come through the subscription.
            nacos.register("orders", "10.0.0.2", 8080)
            nacos.set_healthy("orders", "10.0.0.1", 8080, False)
            await events.wait_for(
                lambda log: (
                    endpoints(log, ORDERS) == [("10.0.0.1", 8080, 2, False), ("10.0.0.2", 8080, 1, True)]
                ),
                "10.0.0.2 added and 10.0.0.1 unhealthy",
            )
            # The last instance gone: the service is deleted.
            nacos.deregister("orders", "10.0.0.1", 8080)
            nacos.deregister("orders", "10.0.0.2", 8080)
            await events.wait_for(lambda log: log.of(Op.DELETE, REGISTRY_SERVICE_KIND, ORDERS), "the delete")
        finally:
            code = await asyncio.to_thread(service.terminate)
        assert code == 0, service.output()
        assert not nacos.connections  # the client closed its connection on the way out
    finally:
        await nacos.stop()
