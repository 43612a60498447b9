"""Flags every xdsbus service takes, each defaulting to its XDSBUS_* environment variable."""

from __future__ import annotations

import argparse
import logging
import os
import socket

from xdsbus.bus import DEFAULT_NATS_URL
from xdsbus.logs import LOG_FORMATS
from xdsbus.secretbox import LOCAL_KEY_FILE, SecretBox, SecretKeyError


def default_instance_id() -> str:
    """`<hostname>-<pid>`: unique enough among replicas, readable in leases and in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """`--nats-url`, `--log-format` and `--log-level`, with their environment fallbacks."""
    env = os.environ.get
    parser.add_argument(
        "--nats-url",
        default=env("XDSBUS_NATS_URL", DEFAULT_NATS_URL),
        help=f"NATS server (env XDSBUS_NATS_URL; default {DEFAULT_NATS_URL})",
    )
    parser.add_argument(
        "--log-format",
        default=env("XDSBUS_LOG_FORMAT", "text"),
        help="text or json (env XDSBUS_LOG_FORMAT; default text)",
    )
    parser.add_argument(
        "--log-level",
        default=env("XDSBUS_LOG_LEVEL", "info"),
        help="debug, info, warning or error (env XDSBUS_LOG_LEVEL; default info)",
    )


def check_common_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with status 2 on a bad log format or level. Checked after parsing rather than with
    argparse `choices=`, which does not check values that come from the environment."""
    if args.log_format not in LOG_FORMATS:
        parser.error(f"--log-format must be one of {', '.join(LOG_FORMATS)}, not {args.log_format!r}")
    if not isinstance(logging.getLevelName(str(args.log_level).upper()), int):
        parser.error(f"--log-level: unknown level {args.log_level!r}")


def watcher_secret_box(log: logging.Logger) -> SecretBox | None:
    """The key a watcher seals Secrets with (XDSBUS_SECRET_KEY, XDSBUS_SECRET_KEY_FILE, else the local
    stack's file); None after logging why when there is none: the watcher must then exit with status 2."""
    try:
        return SecretBox.from_env(default_key_file=LOCAL_KEY_FILE)
    except (SecretKeyError, OSError) as exc:
        log.error("no usable secret key (set XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE): %s", exc)
        return None
