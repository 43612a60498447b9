"""An in-test registry sink and helpers to run `ConsulRegistry` against the fake agent."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import pytest

from tests.fakes.consul_server import FakeConsul
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryService
from xdsbus_watch_consul import ConsulRegistry


class Sink:
    """Records what a registry reports and keeps the resulting state, like the machinery would."""

    def __init__(self) -> None:
        self.state: dict[str, RegistryService] = {}
        self.events: list[tuple[str, Any]] = []
        self.problems: list[tuple[str, str]] = []
        # Answers the agent gave, changes or not (the source lag of /metrics counts from the last).
        self.answers = 0
        self.runner: asyncio.Task[None] | None = None  # set by running(): until() fails if it crashes
        self._changed = asyncio.Condition()

    async def _note(self, event: tuple[str, Any]) -> None:
        self.events.append(event)
        async with self._changed:
            self._changed.notify_all()

    async def resync(self, services: Sequence[RegistryService]) -> None:
        self.state = {s.hostname: s for s in services}
        await self._note(("resync", sorted(s.hostname for s in services)))

    async def upsert(self, service: RegistryService) -> None:
        self.state[service.hostname] = service
        await self._note(("upsert", service.hostname))

    async def delete(self, hostname: str) -> None:
        self.state.pop(hostname, None)
        await self._note(("delete", hostname))

    def answered(self) -> None:
        self.answers += 1

    def problem(self, what: str, reason: str) -> None:
        self.problems.append((what, reason))
        self.events.append(("problem", what))
        asyncio.get_running_loop().create_task(self.wake())

    async def wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def until(self, probe: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until `probe()` is truthy, re-checking on every report; its value."""
        async with asyncio.timeout(timeout), self._changed:
            while not (value := probe()):
                runner = self.runner
                if runner is not None and runner.done() and not runner.cancelled() and runner.exception():
                    raise AssertionError("the registry's run failed") from runner.exception()
                await self._changed.wait()
            return value

    def kinds(self, start: int = 0) -> list[tuple[str, Any]]:
        """Events from `start` on, problems left out."""
        return [e for e in self.events[start:] if e[0] != "problem"]

    def endpoints(self, hostname: str) -> list[tuple[str, int]]:
        return [(e.address, e.port) for e in self.state[hostname].endpoints]


class Creds:
    def __init__(self, secrets: dict[str, dict[str, str]] | None = None) -> None:
        self.secrets = secrets or {}

    def get(self, secret_name: str, key: str) -> str | None:
        return self.secrets.get(secret_name, {}).get(key)


def config(fake: FakeConsul, **fields: Any) -> RegistryConfig:
    values: dict[str, Any] = {
        "type": "consul",
        "name": "main",
        "domain": "127.0.0.1",
        "port": fake.port,
        "consul_datacenter": fake.datacenter,
    }
    values.update(fields)
    return RegistryConfig(**values)


def registry(fake: FakeConsul, creds: Creds | None = None, **fields: Any) -> ConsulRegistry:
    """A registry tuned for tests: a long catalog wait (blocking queries deliver changes at once) and a
    rate limiter that does not slow quick successive changes down."""
    return ConsulRegistry(
        config(fake, **fields), creds or Creds(), refresh_interval=30.0, churn_interval=0.02, burst=2
    )


@contextlib.asynccontextmanager
async def running(reg: ConsulRegistry, sink: Sink) -> AsyncIterator[asyncio.Task[None]]:
    """`reg.run(sink)` in a task, cancelled on the way out; waits for the first resync."""
    task = asyncio.create_task(reg.run(sink))
    task.add_done_callback(lambda _: asyncio.get_running_loop().create_task(sink.wake()))
    try:
        await sink.until(lambda: any(e[0] == "resync" for e in sink.events) or task.done())
        if task.done():
            task.result()  # raise what run raised
        sink.runner = task
        yield task
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.fixture
async def fake() -> AsyncIterator[FakeConsul]:
    async with FakeConsul() as server:
        yield server
