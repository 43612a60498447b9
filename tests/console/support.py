"""A console over a real ledger: nats-server with the users of docs/design.md §10, an in-process builder
fed by a scripted source, and `xdsbus-console` as a subprocess connected as the read-only `reader`."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from tests.builder.support import cluster, running_builder, wait_for_caught_up
from tests.support.objects import endpoint_slice, ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, free_port, tool, wait_for_port
from xdsbus_dev.nats_users import local_roles

# Envoy refuses it (RE2 program size over its limit): the builder rejects the Ingress and says why.
OVERSIZED_REGEX = "/api/[a-z0-9]{1,64}/items/[0-9]{1,20}"
SHOP_CLUSTER = cluster("shop")


def rejected_ingress() -> dict[str, Any]:
    """An Ingress whose regex path the builder rejects, naming the regex's program size."""
    obj = ingress("too-greedy", "bad.example.com", "shop", path=OVERSIZED_REGEX)
    obj["metadata"]["annotations"] = {"higress.io/full-path-regex": "true"}
    obj["spec"]["rules"][0]["http"]["paths"][0]["pathType"] = "ImplementationSpecific"
    return obj


class ConsoleStack:
    """The running pieces a console test talks to."""

    def __init__(self, bus: Bus, source: ScriptedSource, console: Service | None, port: int) -> None:
        self.bus = bus
        self.source = source
        self.console = console
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.endpoint_changes = 0

    async def get(self, path: str, status: int = 200) -> Any:
        """GET an API path; its JSON, after checking the status."""
        async with aiohttp.ClientSession() as session, session.get(self.url + path) as response:
            body = await response.text()
            log = self.console.output() if self.console else ""
            assert response.status == status, f"GET {path}: {response.status} {body}\n{log}"
            return json.loads(body)

    async def change_endpoints(self) -> int:
        """A new address for the shop Service: the next version changes its endpoints. Returns it."""
        self.endpoint_changes += 1
        await self.source.put(endpoint_slice("shop", [f"10.9.0.{self.endpoint_changes + 1}"]))
        return (await wait_for_caught_up(self.bus)).version

    async def change_cluster(self) -> int:
        """The shop Service's port speaks gRPC now: the next version changes its cluster (HTTP/2 to the
        backend). Returns it."""
        grpc = service("shop")
        grpc["spec"]["ports"][0]["appProtocol"] = "grpc"
        await self.source.put(grpc)
        return (await wait_for_caught_up(self.bus)).version


@contextlib.asynccontextmanager
async def console_stack(workdir: Path) -> AsyncIterator[ConsoleStack]:
    """The stack of this module's tests: two versions, a rejected Ingress, the console up."""
    server = NatsServer(workdir / "nats", users=local_roles("console"))
    server.start()
    console: Service | None = None
    try:
        bus = await connect(BusSettings(url=server.url, nats=server.options()), name="test")
        try:
            async with running_builder(bus):
                source = ScriptedSource(bus, "test/console")
                # Holding its lease, it reports itself (the sources view's watchers).
                await source.lead()
                await source.put(service("shop"))
                await source.put(endpoint_slice("shop", ["10.9.0.1"]))
                await source.put(ingress("shop", "shop.example.com", "shop"))
                await wait_for_caught_up(bus)
                await source.put(rejected_ingress())
                stack = ConsoleStack(bus, source, console=None, port=free_port())
                # The rejection changes no resource: it is folded into this version.
                await stack.change_endpoints()
                port = stack.port
                console = Service(
                    [
                        tool("xdsbus-console"),
                        "--nats-url",
                        server.url,
                        "--listen",
                        f"127.0.0.1:{port}",
                        "--http-listen",
                        "off",
                    ],
                    workdir / "console.log",
                    env=server.client_env("reader"),
                ).start()
                stack.console = console
                wait_for_port(port, timeout=20)
                await eventually(lambda: _scopes(stack), timeout=20, what="the console listing scope default")
                try:
                    yield stack
                finally:
                    await source.release()
        finally:
            await bus.close()
    finally:
        if console is not None:
            console.terminate()
        server.stop()


async def _scopes(stack: ConsoleStack) -> bool:
    data = await stack.get("/api/scopes")
    return any(s["scope"] == "default" for s in data["scopes"])
