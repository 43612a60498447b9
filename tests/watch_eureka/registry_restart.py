"""Shared by the registry restart tests (issue 14): the registry machinery in process on the real
nats-server, with backoff steps so long that only the short probe after a refused connection can meet
the tests' deadlines, and the time from a change at the restarted registry to the event log."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tests.registry.support import Source, mcpbridge
from tests.watch_file.conftest import EventLog
from xdsbus.bus import Bus
from xdsbus.registry.service_main import run_registries
from xdsbus.registry.supervisor import RegistryFactory
from xdsbus_dev.harness.processes import eventually

log = logging.getLogger(__name__)

# Any backoff step of the supervisor lasts at least 10 s with these.
RETRY_BASE = 20.0
RETRY_CAP = 60.0
# Retries seen while the registry is down before it comes back: each would have been a backoff step.
FAILURES = 3


@contextlib.asynccontextmanager
async def registries(
    bus: Bus, service: str, types: set[str], factory: RegistryFactory, entry: dict[str, Any]
) -> AsyncIterator[None]:
    """McpBridge with `entry`, and `run_registries` for `types` until the block ends."""
    await Source(bus, "file/test").put(mcpbridge(entry))
    stop = asyncio.Event()
    task = asyncio.create_task(
        run_registries(
            bus,
            service=service,
            types=types,
            factory=factory,
            stop=stop,
            instance_id="t1",
            retry_base=RETRY_BASE,
            retry_cap=RETRY_CAP,
        )
    )
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=15)


async def failures_logged(caplog: pytest.LogCaptureFixture, count: int = FAILURES) -> None:
    """Wait until the supervisor logged `count` failed runs since the last `caplog.clear()` (repeated
    refusals are logged at DEBUG)."""
    caplog.set_level(logging.DEBUG, logger="xdsbus.registry.supervisor")

    async def seen() -> bool:
        return sum("retrying in" in r.getMessage() for r in caplog.records) >= count

    await eventually(seen, timeout=count * 3.0, what=f"{count} retries while the registry is down")


async def time_to_log(
    events: EventLog, arrived: Callable[[EventLog], Any], what: str, deadline: float
) -> float:
    """Seconds until `arrived(events)`; fails after `deadline`."""
    visible = time.monotonic()
    await events.wait_for(arrived, what, timeout=deadline)
    elapsed = time.monotonic() - visible
    log.info("%s reached the event log %.2fs after it was visible at the registry", what, elapsed)
    return elapsed
