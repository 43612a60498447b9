"""`xdsbus-watch-eureka` as a real process: an McpBridge on NATS names the fake Eureka server, whose
applications arrive in the event log as RegistryService events of source `eureka/main`; a clean stop."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

from tests.fakes.eureka_server import FakeEureka
from tests.support.sources import ScriptedSource
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus_dev.harness.processes import NatsServer, Service, tool


def mcpbridge(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "networking.higress.io/v1",
        "kind": "McpBridge",
        "metadata": {"name": "default", "namespace": "higress-system"},
        "spec": {"registries": [{"type": "eureka", "name": "main", "domain": "127.0.0.1", "port": port}]},
    }


def endpoints(log: EventLog, hostname: str) -> list[tuple[str, int, bool]]:
    """The endpoints of the last upsert of `hostname`."""
    (*_, last) = log.of(Op.UPSERT, REGISTRY_SERVICE_KIND, hostname)
    return [(e["address"], e["port"], e.get("healthy", True)) for e in last.body["endpoints"]]


async def test_service_publishes_eureka_applications(
    tmp_path: Path, nats_server: NatsServer, bus: Bus
) -> None:
    events = EventLog(bus)
    async with FakeEureka() as eureka:
        eureka.register("order-service", "o1", "10.0.0.1", 8080, metadata={"protocol": "grpc"})
        source = ScriptedSource(bus, "file/test")
        await source.put(mcpbridge(eureka.port))
        service = Service(
            [tool("xdsbus-watch-eureka"), "--nats-url", nats_server.url, "--instance-id", "t1"],
            tmp_path / "watch-eureka.log",
            env={"XDSBUS_EUREKA_POLL_INTERVAL": "0.05"},
        ).start()
        try:
            await events.wait_for(
                lambda log: [e for e in log.of(Op.SYNC_END) if e.source == "eureka/main"],
                "the first resync of eureka/main",
            )
            (first,) = events.of(Op.UPSERT, REGISTRY_SERVICE_KIND, "ORDER-SERVICE.eureka")
            assert first.source == "eureka/main"
            assert (first.body["port"], first.body["protocol"], first.body["registry_type"]) == (
                8080,
                "GRPC",
                "eureka",
            )
            assert endpoints(events, "ORDER-SERVICE.eureka") == [("10.0.0.1", 8080, True)]

            # A registration and a status change come through the delta.
            eureka.register("order-service", "o2", "10.0.0.2", 8080)
            eureka.set_status("order-service", "o1", "DOWN")
            await events.wait_for(
                lambda log: (
                    endpoints(log, "ORDER-SERVICE.eureka")
                    == [("10.0.0.1", 8080, False), ("10.0.0.2", 8080, True)]
                ),
                "o2 added and o1 unhealthy",
            )
            # The last instance cancelled: the service is deleted.
            eureka.cancel("order-service", "o1")
            eureka.cancel("order-service", "o2")
            await events.wait_for(
                lambda log: log.of(Op.DELETE, REGISTRY_SERVICE_KIND, "ORDER-SERVICE.eureka"), "the delete"
            )
        finally:
            code = await asyncio.to_thread(service.terminate)
        assert code == 0, service.output()


def test_a_bad_poll_interval_is_a_usage_error() -> None:
    result = subprocess.run(
        [tool("xdsbus-watch-eureka")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "XDSBUS_EUREKA_POLL_INTERVAL": "soon"},
        timeout=30,
    )
    assert result.returncode == 2
    assert "XDSBUS_EUREKA_POLL_INTERVAL: invalid float value: 'soon'" in result.stderr
