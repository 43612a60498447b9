"""Logging setup shared by every service: human-readable text, or one JSON object per line.

Fields passed with `extra=` (e.g. `log.error("...", extra={"file": path, "line": 3})`) appear as keys in
JSON logs and as `key=value` pairs after the message in text logs, so the same call site serves both.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import Any, TextIO

LOG_FORMATS = ("text", "json")

# Attributes every LogRecord has; anything else on a record came from `extra=` and is worth showing.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _RECORD_ATTRS and not k.startswith("_")}


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the `extra=` fields, and exc when present."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        # default=str: an extra that is not JSON (a Path, an enum) must never make a log line vanish.
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """`<ts> <LEVEL> <logger>: <msg> key=value ...` for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        extras = _extras(record)
        if extras:
            line += " " + " ".join(f"{k}={v}" for k, v in extras.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return line


def setup_logging(fmt: str = "text", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure the root logger for a service: `fmt` is "text" or "json", `level` a level name.

    Replaces any handlers already on the root logger, so calling it twice does not duplicate lines.
    Raises ValueError for an unknown format or level."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (expected one of {', '.join(LOG_FORMATS)})")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
