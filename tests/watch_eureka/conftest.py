"""Fixtures for the Eureka source: the fake Eureka server, a recording sink, and EurekaRegistry runs
against them with a short poll interval."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

from tests.fakes.eureka_server import FakeEureka
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryService
from xdsbus_dev.harness.processes import eventually
from xdsbus_watch_eureka import EurekaRegistry

# Short enough that a few polls take well under a second.
POLL = 0.03


class NoCredentials:
    def get(self, secret_name: str, key: str) -> str | None:
        return None


@dataclasses.dataclass
class RecordingSink:
    """A RegistrySink that keeps every call and the state they add up to."""

    calls: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    services: dict[str, RegistryService] = dataclasses.field(default_factory=dict)
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # Answers the server gave, changes or not (the source lag of /metrics counts from the last).
    answers: int = 0

    async def resync(self, services: Sequence[RegistryService]) -> None:
        self.calls.append(("resync", [s.hostname for s in services]))
        self.services = {s.hostname: s for s in services}

    async def upsert(self, service: RegistryService) -> None:
        self.calls.append(("upsert", service.hostname))
        self.services[service.hostname] = service

    async def delete(self, hostname: str) -> None:
        self.calls.append(("delete", hostname))
        self.services.pop(hostname, None)

    def answered(self) -> None:
        self.answers += 1

    def problem(self, what: str, reason: str) -> None:
        self.problems.append((what, reason))

    def ops(self, op: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == op]

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        """Until `check()` is truthy (the registry runs on this loop, so each probe sees its progress)."""

        async def probe() -> Any:
            return check()

        return await eventually(probe, timeout=timeout, interval=0.01, what=what)

    def endpoints(self, hostname: str) -> list[tuple[str, int, bool]]:
        return [(e.address, e.port, e.healthy) for e in self.services[hostname].endpoints]


@dataclasses.dataclass
class Run:
    registry: EurekaRegistry
    sink: RecordingSink
    task: asyncio.Task[None]

    async def polls(self, count: int = 2) -> None:
        """Until `count` more delta polls have completed."""
        target = self.registry.delta_fetches + count
        await self.sink.wait_for(lambda: self.registry.delta_fetches >= target, f"{count} delta polls")

    async def failure(self, timeout: float = 5.0) -> BaseException:
        """The exception `run` ends with."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert self.task.done(), "run did not end"
        exc = self.task.exception()
        assert exc is not None
        return exc


StartRun = Callable[..., Awaitable[Run]]


def config_for(server: FakeEureka, **fields: Any) -> RegistryConfig:
    return RegistryConfig(type="eureka", name="main", domain="127.0.0.1", port=server.port, **fields)


@pytest.fixture
async def eureka() -> AsyncIterator[FakeEureka]:
    async with FakeEureka() as server:
        yield server


@pytest.fixture
async def start_run(eureka: FakeEureka) -> AsyncIterator[StartRun]:
    """Start `EurekaRegistry.run` as a task and wait for its first resync; all are cancelled at the end."""
    tasks: list[asyncio.Task[None]] = []

    async def start(
        registry: EurekaRegistry | None = None, sink: RecordingSink | None = None, **config: Any
    ) -> Run:
        registry = registry or EurekaRegistry(
            config_for(eureka, **config), NoCredentials(), poll_interval=POLL
        )
        sink = sink or RecordingSink()
        resyncs = len(sink.ops("resync"))
        task = asyncio.create_task(registry.run(sink))
        tasks.append(task)
        run = Run(registry, sink, task)
        await sink.wait_for(lambda: len(sink.ops("resync")) > resyncs or task.done(), "the first resync")
        return run

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
