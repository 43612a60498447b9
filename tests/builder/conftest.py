"""Fixtures of the builder tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from tests.builder.support import connect_bus
from xdsbus.bus import Bus
from xdsbus_dev.harness.processes import NatsServer


@pytest.fixture
async def bus_with_lease_ttl(nats_server: NatsServer) -> AsyncIterator[Callable[[float], Awaitable[Bus]]]:
    """Connect first, so the leases bucket expires leases after the given TTL (a bucket setting: the
    builders' --lease-ttl only sets how often they renew)."""
    opened: list[Bus] = []

    async def open_bus(ttl: float) -> Bus:
        bus = await connect_bus(nats_server.url, lease_ttl=ttl)
        opened.append(bus)
        return bus

    yield open_bus
    for bus in opened:
        await bus.close()
