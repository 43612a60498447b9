"""`xdsbus-watch-file` as a real process: flags, environment, JSON logs, a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import subprocess
from pathlib import Path

from tests.watch_file.conftest import EventLog, file_status, write
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus.logs import setup_logging
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, tool


async def test_service_publishes_and_stops_on_sigterm(
    tmp_path: Path, nats_server: NatsServer, bus: Bus, events: EventLog
) -> None:
    config = tmp_path / "site"
    write(config / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: one}\n")
    service = Service(
        [
            tool("xdsbus-watch-file"),
            "--dir",
            str(config),
            "--nats-url",
            nats_server.url,
            "--log-format",
            "json",
        ],
        tmp_path / "watch-file.log",
        # The environment fallbacks: the source name and poll interval come from here.
        env={"XDSBUS_SOURCE_NAME": "demo", "XDSBUS_POLL_INTERVAL": "0.05"},
    ).start()
    try:
        end = await events.wait_sync_end("Service")
        assert end.source == "file/demo"
        assert end.body["keys"] == ["default/one"]

        write(config / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: one}\n bad: [\n")
        await eventually(lambda: file_status(bus, "demo", "a.yaml"), what="the rejection in KV")
        assert "a.yaml:4: invalid YAML" in service.output()
    finally:
        code = await asyncio.to_thread(service.terminate)
    assert code == 0, service.output()

    lines = [json.loads(line) for line in service.output().splitlines() if line.strip()]
    assert any(line["msg"].startswith("watching") for line in lines)
    rejected = next(line for line in lines if line["level"] == "error")
    assert rejected["file"] == "a.yaml" and rejected["line"] == 4
    assert lines[-1]["msg"] == "stopped"
    await events.read()
    assert events.of(Op.DELETE) == []


def test_missing_dir_flag_is_a_usage_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [tool("xdsbus-watch-file")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert result.returncode == 2
    assert "--dir (or XDSBUS_WATCH_DIR) is required" in result.stderr


def test_text_and_json_logs_carry_extra_fields() -> None:
    out = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_logging("json", "info", stream=out)
        logging.getLogger("t").warning("hello %s", "you", extra={"file": "a.yaml", "line": 3})
        setup_logging("text", "info", stream=out)
        logging.getLogger("t").info("plain", extra={"file": "b.yaml"})
        logging.getLogger("t").debug("hidden")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = out.getvalue().splitlines()
    record = json.loads(first)
    assert record["msg"] == "hello you" and record["level"] == "warning"
    assert record["file"] == "a.yaml" and record["line"] == 3
    assert second.endswith("t: plain file=b.yaml") and " INFO " in second
