"""`xdsbus-watch-file`: command line, configuration and lifecycle of the file source."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import Sequence
from pathlib import Path

from xdsbus.bus import BusSettings, connect_unless_stopped
from xdsbus.health import Health, Listen
from xdsbus.logs import setup_logging
from xdsbus.nats_options import redact_url
from xdsbus.secretbox import SecretBox
from xdsbus.service import run_service
from xdsbus.service_flags import (
    ServiceParser,
    add_common_flags,
    add_health_flag,
    add_lease_flags,
    positive_float,
    watcher_secret_box,
)
from xdsbus_watch_file.file_watcher import DEFAULT_POLL_INTERVAL, FileWatcher, default_source_name

log = logging.getLogger("xdsbus_watch_file")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The service's configuration, from flags with environment fallbacks."""

    directory: Path
    source_name: str
    poll_interval: float
    instance_id: str
    lease_ttl: float
    nats_url: str
    log_format: str
    log_level: str
    http_listen: Listen | None


def build_parser() -> ServiceParser:
    """Flags; each defaults to its XDSBUS_* environment variable."""
    parser = ServiceParser(
        prog="xdsbus-watch-file",
        description="Publish the Kubernetes-style manifests of a directory (*.yaml, *.yml, *.json, "
        "recursively) to the xdsbus event log as source file/<name>.",
    )
    parser.env_flag(
        "--dir", "XDSBUS_WATCH_DIR", default="", shown_default="none: required", help="directory to watch"
    )
    parser.env_flag(
        "--source-name",
        "XDSBUS_SOURCE_NAME",
        default="",
        shown_default="the directory's name",
        help="source name, published as file/<name>",
    )
    parser.env_flag(
        "--poll-interval",
        "XDSBUS_POLL_INTERVAL",
        type=positive_float,
        default=DEFAULT_POLL_INTERVAL,
        help="seconds between scans of the directory",
    )
    add_lease_flags(parser, "the source lease watch.file.<name>")
    add_common_flags(parser)
    add_health_flag(parser)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Parse and validate the command line; exits with status 2 and a message on a bad value."""
    parser = build_parser()
    args = parser.parse(argv)
    if not args.dir:
        parser.error("--dir (or XDSBUS_WATCH_DIR) is required")
    directory = Path(args.dir)
    source_name = args.source_name or default_source_name(directory)
    if "/" in source_name:
        parser.fail("source_name", f"{source_name!r}: give the name only, without 'file/' or any '/'")
    return Settings(
        directory=directory,
        source_name=source_name,
        poll_interval=args.poll_interval,
        instance_id=args.instance_id,
        lease_ttl=args.lease_ttl,
        nats_url=args.nats_url,
        log_format=args.log_format,
        log_level=args.log_level,
        http_listen=args.http_listen,
    )


async def serve(settings: Settings, secret_box: SecretBox, health: Health, stop: asyncio.Event) -> None:
    """Connect to NATS and run the watcher until `stop` is set."""
    bus_settings = dataclasses.replace(BusSettings.from_env(settings.nats_url), lease_ttl=settings.lease_ttl)
    bus = await connect_unless_stopped(
        bus_settings, f"xdsbus-watch-file {settings.source_name} {settings.instance_id}", stop
    )
    if bus is None:
        return
    health.bus = bus
    try:
        watcher = FileWatcher(
            bus,
            settings.directory,
            source_name=settings.source_name,
            poll_interval=settings.poll_interval,
            secret_box=secret_box,
            stop=stop,
            instance_id=settings.instance_id,
            lease_ttl=settings.lease_ttl,
        )
        log.info(
            "watching %s as %s",
            settings.directory,
            watcher.source,
            extra={
                "nats_url": redact_url(settings.nats_url),
                "poll_interval": settings.poll_interval,
                "instance_id": settings.instance_id,
            },
        )
        await watcher.run()
        log.info("stopped")
    finally:
        await bus.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `xdsbus-watch-file`; returns the exit status (0 after SIGTERM/SIGINT)."""
    settings = parse_settings(argv)
    setup_logging(settings.log_format, settings.log_level)
    secret_box = watcher_secret_box(log)
    if secret_box is None:
        return 2
    health = Health()
    return run_service(
        functools.partial(serve, settings, secret_box, health),
        health=health,
        http_listen=settings.http_listen,
    )


if __name__ == "__main__":
    raise SystemExit(main())
