"""`xdsbus-watch-consul` as a real process: an McpBridge on NATS names the fake Consul agent (with an ACL
token from a sealed Secret), whose services arrive in the event log as RegistryService events of source
`consul/main`; changes follow; a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.fakes.consul_server import FakeConsul
from tests.registry.support import Source, mcpbridge, secret
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import NatsServer, Service, tool

WEB = "web.dc1.consul"


def endpoints(log: EventLog, hostname: str) -> list[tuple[str, int, int]]:
    """The endpoints of the last upsert of `hostname`."""
    (*_, last) = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, hostname)
    return [(e["address"], e["port"], e.get("weight", 1)) for e in last.body["endpoints"]]


def registry(port: int) -> dict[str, Any]:
    return {
        "type": "consul",
        "name": "main",
        "domain": "127.0.0.1",
        "port": port,
        "consulDatacenter": "dc1",
        "consulServiceTag": "gateway",
        "authSecretName": "consul-auth",
    }


async def test_service_publishes_consul_services(tmp_path: Path, nats_server: NatsServer, bus: Bus) -> None:
    events = EventLog(bus)
    async with FakeConsul(token="s3cret") as consul:
        consul.register(
            "web", "web-1", "10.0.0.1", 8080, tags=["gateway"], meta={"protocol": "grpc"}, weight=2
        )
        consul.register("web", "web-2", "10.0.0.2", 8080, tags=["gateway"])
        consul.register("billing", "billing-1", "10.0.0.9", 9000)  # no tag: not published
        cluster = Source(bus, "k8s/test", secret_box=SecretBox.from_env())
        await cluster.put(secret("consul-auth", consulToken="s3cret"))
        await cluster.put(mcpbridge(registry(consul.port)))
        service = Service(
            [tool("xdsbus-watch-consul"), "--nats-url", nats_server.url, "--instance-id", "t1"],
            tmp_path / "watch-consul.log",
        ).start()
        try:
            await events.wait_for(
                lambda log: [e for e in log.of(Op.SYNC_END) if e.source == "consul/main"],
                "the first resync of consul/main",
            )
            (first,) = events.of(Op.UPSERT, REGISTRY_SERVICE_KIND, WEB)
            assert first.source == "consul/main"
            assert (first.body["port"], first.body["protocol"], first.body["registry_type"]) == (
                8080,
                "GRPC",
                "consul",
            )
            assert endpoints(events, WEB) == [("10.0.0.1", 8080, 2), ("10.0.0.2", 8080, 1)]
            assert not [e for e in events.events if e.key.startswith("billing")]

            # A failing check comes through the blocking health query.
            consul.set_status("web-2", "critical")
            await events.wait_for(lambda log: endpoints(log, WEB) == [("10.0.0.1", 8080, 2)], "web-2 removed")
            # The service leaves the catalog: deleted.
            consul.deregister("web-1")
            consul.deregister("web-2")
            await events.wait_for(lambda log: log.of(Op.DELETE, REGISTRY_SERVICE_KIND, WEB), "the delete")
        finally:
            code = await asyncio.to_thread(service.terminate)
        assert code == 0, service.output()
