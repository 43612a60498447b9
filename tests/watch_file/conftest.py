"""Fixtures for the file source: an in-process FileWatcher on the real nats-server, and the event log
as a user of the stream sees it."""

from __future__ import annotations

import asyncio
import dataclasses
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, Event, Op, decode
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import eventually
from xdsbus_watch_file import FileWatcher
from xdsbus_watch_file.status import STATUS_KIND

POLL = 0.02


def write(path: Path, text: str) -> Path:
    """Write a manifest file (dedented), creating its directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@dataclasses.dataclass
class EventLog:
    """Every event stored in XDSBUS_EVENTS, read in sequence order with js.get_msg."""

    bus: Bus
    events: list[Event] = dataclasses.field(default_factory=list)

    async def read(self) -> list[Event]:
        """Catch up with the stream and return all events so far."""
        info = await self.bus.js.stream_info(EVENTS_STREAM)
        for seq in range(len(self.events) + 1, info.state.last_seq + 1):
            msg = await self.bus.js.get_msg(EVENTS_STREAM, seq)
            assert msg.data is not None
            self.events.append(decode(msg.data))
        return self.events

    def of(self, op: Op, kind: str | None = None, key: str | None = None) -> list[Event]:
        """Events read so far with this op (and kind, and key)."""
        return [
            e
            for e in self.events
            if e.op is op and (kind is None or e.kind == kind) and (key is None or e.key == key)
        ]

    async def wait_for(self, check: Callable[[EventLog], Any], what: str, timeout: float = 10.0) -> Any:
        """Read until `check(self)` is truthy."""

        async def probe() -> Any:
            await self.read()
            return check(self)

        return await eventually(probe, timeout=timeout, what=what)

    async def wait_sync_end(self, kind: str = "Service", count: int = 1) -> Event:
        """The `count`-th sync_end of `kind`."""
        await self.wait_for(
            lambda log: len(log.of(Op.SYNC_END, kind)) >= count, f"sync_end #{count} of {kind}"
        )
        return self.of(Op.SYNC_END, kind)[count - 1]


@pytest.fixture
def events(bus: Bus) -> EventLog:
    return EventLog(bus)


@dataclasses.dataclass
class Running:
    watcher: FileWatcher
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.watcher.stop.set()
        await asyncio.wait_for(self.task, timeout=5)


StartWatcher = Callable[..., Awaitable[Running]]


@pytest.fixture
async def start_watcher(bus: Bus) -> AsyncIterator[StartWatcher]:
    """Start a FileWatcher on a directory as an asyncio task; all are stopped at the end of the test."""
    running: list[Running] = []

    async def start(directory: Path, **kwargs: Any) -> Running:
        kwargs.setdefault("poll_interval", POLL)
        kwargs.setdefault("secret_box", SecretBox.from_env())
        watcher = FileWatcher(bus, directory, stop=asyncio.Event(), **kwargs)
        run = Running(watcher, asyncio.create_task(watcher.run()))
        running.append(run)
        return run

    yield start
    for run in running:
        if not run.task.done():
            await run.stop()


async def file_status(bus: Bus, source_name: str, path: str) -> dict[str, Any] | None:
    """The KV status of one file of a file source as `xdsbus status --json` shows it, or None when there
    is none."""
    status = await status_store.read(bus, STATUS_KIND, f"file/{source_name}", path)
    return msgspec.to_builtins(status) if status is not None else None


async def wait_status(bus: Bus, source_name: str, path: str, state: str) -> dict[str, Any]:
    """Wait until a file's KV status has `state`, and return it."""

    async def probe() -> dict[str, Any] | None:
        status = await file_status(bus, source_name, path)
        return status if status and status["state"] == state else None

    return await eventually(probe, timeout=10, what=f"status {state} for {path}")
