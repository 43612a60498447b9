"""Fixtures for the Nacos source: the fake Nacos, a recording sink, and NacosRegistry runs against them
with a short service-list refresh."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import pytest

import xdsbus_watch_nacos.registry as registry_module
from tests.fakes.nacos_server import FakeNacos
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryService
from xdsbus_watch_nacos.registry import NacosRegistry

# Service lists are re-read this often in tests (Higress' floor of 10 s is lowered for them).
REFRESH = 0.1


class Secrets:
    """Credentials from a dict: {(secret, key): value}."""

    def __init__(self, values: dict[tuple[str, str], str] | None = None) -> None:
        self.values = values or {}

    def get(self, secret_name: str, key: str) -> str | None:
        return self.values.get((secret_name, key))


@dataclasses.dataclass
class RecordingSink:
    """A RegistrySink that keeps every call and the state they add up to; waiting is woken by calls."""

    calls: list[tuple[str, Any]] = dataclasses.field(default_factory=list)
    services: dict[str, RegistryService] = dataclasses.field(default_factory=dict)
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    # Answers the server gave, changes or not (the source lag of /metrics counts from the last).
    answers: int = 0
    changed: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)

    async def resync(self, services: Sequence[RegistryService]) -> None:
        self.calls.append(("resync", sorted(s.hostname for s in services)))
        self.services = {s.hostname: s for s in services}
        self.changed.set()

    async def upsert(self, service: RegistryService) -> None:
        self.calls.append(("upsert", service.hostname))
        self.services[service.hostname] = service
        self.changed.set()

    async def delete(self, hostname: str) -> None:
        self.calls.append(("delete", hostname))
        self.services.pop(hostname, None)
        self.changed.set()

    def answered(self) -> None:
        self.answers += 1

    def problem(self, what: str, reason: str) -> None:
        self.problems.append((what, reason))
        self.changed.set()

    def ops(self, op: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == op]

    async def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
        """Until `check()` is truthy, re-checked after every sink call."""

        async def loop() -> Any:
            while not (result := check()):
                self.changed.clear()
                await self.changed.wait()
            return result

        try:
            return await asyncio.wait_for(loop(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"timed out after {timeout}s waiting for {what}; calls: {self.calls}"
            ) from None

    def endpoints(self, hostname: str) -> list[tuple[str, int, int, bool]]:
        return [(e.address, e.port, e.weight, e.healthy) for e in self.services[hostname].endpoints]


@dataclasses.dataclass
class Run:
    registry: NacosRegistry
    sink: RecordingSink
    task: asyncio.Task[None]

    async def failure(self, timeout: float = 5.0) -> BaseException:
        """The exception `run` ends with."""
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(asyncio.shield(self.task), timeout)
        assert self.task.done(), "run did not end"
        exc = self.task.exception()
        assert exc is not None
        return exc

    async def stop(self) -> None:
        self.task.cancel()
        # A run that already failed was looked at by its test (`failure()`).
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.task


StartRun = Callable[..., Awaitable[Run]]


def config_for(fake: FakeNacos, **fields: Any) -> RegistryConfig:
    fields.setdefault("nacos_groups", ["DEFAULT_GROUP"])
    fields.setdefault("nacos_refresh_interval", int(REFRESH * 1e9))
    fields.setdefault("type", "nacos2")
    fields.setdefault("domain", "127.0.0.1")
    return RegistryConfig(name="prod", port=fake.http_port, **fields)


@pytest.fixture
def short_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "MIN_REFRESH_INTERVAL", REFRESH / 2)
    monkeypatch.setattr(registry_module, "HEALTH_INTERVAL", 0.05)


@pytest.fixture
async def fake() -> AsyncIterator[FakeNacos]:
    server = FakeNacos()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def start_run(fake: FakeNacos, short_intervals: None) -> AsyncIterator[StartRun]:
    """Start `NacosRegistry.run` as a task and wait for its first resync (or its end); all are cancelled at
    the end of the test."""
    runs: list[Run] = []

    async def start(
        *,
        server: FakeNacos | None = None,
        sink: RecordingSink | None = None,
        credentials: Secrets | None = None,
        wait: bool = True,
        **config: Any,
    ) -> Run:
        registry = NacosRegistry(config_for(server or fake, **config), credentials or Secrets())
        sink = sink or RecordingSink()
        resyncs = len(sink.ops("resync"))
        run = Run(registry, sink, asyncio.create_task(registry.run(sink)))
        run.task.add_done_callback(lambda _: sink.changed.set())  # wake waiters when run ends
        runs.append(run)
        if wait:
            await sink.wait_for(
                lambda: len(sink.ops("resync")) > resyncs or run.task.done(), "the first resync"
            )
        return run

    yield start
    for run in runs:
        await run.stop()
