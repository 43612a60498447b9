"""Shared fixtures: a real nats-server per test, a connected Bus, and a secret key."""

from __future__ import annotations

import base64
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from xdsbus.bus import Bus, BusSettings, connect
from xdsbus_dev.harness.processes import NatsServer

# One fixed key for the whole test session; child services inherit it through the environment.
os.environ.setdefault("XDSBUS_SECRET_KEY", base64.b64encode(b"k" * 32).decode())


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    b = await connect(BusSettings(url=nats_server.url), name="test")
    yield b
    await b.close()
