"""The layout (docs/design.md §9): only `xdsbus layout --apply` creates or reshapes streams, buckets and
stores; services wait for missing objects and name every other difference, on a real nats-server."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from nats.js import api

from xdsbus import layout
from xdsbus.bus import BusSettings, LayoutMissing, apply_layout, connect
from xdsbus.events import EVENTS_STREAM
from xdsbus.layout import Caps, LayoutSettings
from xdsbus_dev.harness.processes import NatsServer, tool


@pytest.fixture
def empty_server(tmp_path: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", layout=None)
    server.start()
    yield server
    server.stop()


def _cli(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("xdsbus"), "layout", "--nats-url", url, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )


def test_every_object_has_a_size_cap_and_discards_nothing():
    specs = layout.desired(LayoutSettings())
    assert {s.name for s in specs} >= {
        EVENTS_STREAM,
        "XDSBUS_LEDGER",
        "xdsbus_checkpoints",
        "xdsbus_retention",
    }
    for spec in specs:
        settings = {s.field: s.want for s in spec.settings}
        assert settings["max_bytes"] > 0, spec.name
        assert settings["discard"] == "new", spec.name
    events = next(s for s in specs if s.name == EVENTS_STREAM)
    assert {s.field: s.want for s in events.settings}["max_age"] == 0.0


def test_caps_come_from_the_environment_and_a_bad_one_is_named():
    assert Caps.from_env({"XDSBUS_EVENTS_MAX_BYTES": "12345"}).events == 12345
    with pytest.raises(ValueError, match="XDSBUS_CHECKPOINTS_MAX_BYTES"):
        Caps.from_env({"XDSBUS_CHECKPOINTS_MAX_BYTES": "lots"})


async def test_a_service_waits_for_the_layout_then_connects(empty_server: NatsServer):
    with pytest.raises(LayoutMissing, match="stream XDSBUS_EVENTS"):
        await connect(BusSettings(url=empty_server.url), name="impatient", attempts=1)
    # A service started before the layout job: it waits, and connects once the layout is there.
    waiting = asyncio.ensure_future(connect(BusSettings(url=empty_server.url), name="early"))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await apply_layout(empty_server.url, LayoutSettings()) == []
    bus = await asyncio.wait_for(waiting, 30)
    await bus.close()


async def test_a_service_names_each_difference_and_changes_nothing(
    empty_server: NatsServer, caplog: pytest.LogCaptureFixture
):
    await apply_layout(empty_server.url, LayoutSettings())
    caplog.set_level(logging.WARNING, logger="xdsbus.bus")
    settings = BusSettings(url=empty_server.url, caps=Caps(events=5 * 1024 * 1024))
    bus = await connect(settings, name="differs")
    try:
        assert (
            "differs: stream XDSBUS_EVENTS: max_bytes is 2147483648, the layout wants 5242880" in caplog.text
        )
        info = await bus.js.stream_info(EVENTS_STREAM)
        assert info.config.max_bytes == Caps().events
    finally:
        await bus.close()


def test_the_command_shows_applies_and_reshapes(empty_server: NatsServer):
    first = _cli(empty_server.url)
    assert first.returncode == 1, first.stdout + first.stderr
    assert "stream XDSBUS_EVENTS is missing" in first.stdout
    assert "KV xdsbus_retention is missing" in first.stdout

    applied = _cli(empty_server.url, "--apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert _cli(empty_server.url).returncode == 0

    bigger = _cli(empty_server.url, XDSBUS_EVENTS_MAX_BYTES="3000000000", XDSBUS_LEASE_TTL="2")
    assert bigger.returncode == 1
    assert "stream XDSBUS_EVENTS: max_bytes is 2147483648, the layout wants 3000000000" in bigger.stdout
    assert "KV xdsbus_leases: max_age is 15.0, the layout wants 2.0" in bigger.stdout
    reshaped = _cli(empty_server.url, "--apply", XDSBUS_EVENTS_MAX_BYTES="3000000000", XDSBUS_LEASE_TTL="2")
    assert reshaped.returncode == 0, reshaped.stdout + reshaped.stderr
    assert _cli(empty_server.url, XDSBUS_EVENTS_MAX_BYTES="3000000000", XDSBUS_LEASE_TTL="2").returncode == 0


async def test_an_old_install_is_reshaped_and_what_cannot_change_in_place_is_refused(
    empty_server: NatsServer,
):
    nc = await nats.connect(empty_server.url)
    try:
        js = nc.jetstream()
        # The event log as earlier versions made it (a 7-day age limit, no cap), and a ledger in memory.
        await js.add_stream(
            api.StreamConfig(name=EVENTS_STREAM, subjects=["xdsbus.events.>"], max_age=7 * 24 * 3600.0)
        )
        await js.add_stream(
            api.StreamConfig(
                name="XDSBUS_LEDGER", subjects=["xdsbus.ledger.>"], storage=api.StorageType.MEMORY
            )
        )
        differences = {d.describe() for d in await layout.compare(js, LayoutSettings())}
        assert "stream XDSBUS_EVENTS: max_age is 604800.0, the layout wants 0.0" in differences
        assert "stream XDSBUS_EVENTS: discard is 'old', the layout wants 'new'" in differences
    finally:
        await nc.close()

    result = await asyncio.to_thread(_cli, empty_server.url, "--apply")
    assert result.returncode == 1
    assert "refusing to change stream XDSBUS_LEDGER: storage cannot be changed in place" in result.stderr

    nc = await nats.connect(empty_server.url)
    try:
        config = (await nc.jetstream().stream_info(EVENTS_STREAM)).config
        assert (config.max_age, config.max_bytes, config.discard) == (0.0, Caps().events, "new")
    finally:
        await nc.close()
