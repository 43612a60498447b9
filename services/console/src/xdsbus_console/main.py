"""`xdsbus-console`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Sequence

from xdsbus.bus import BusSettings, connect_unless_stopped
from xdsbus.health import Health, Listen, listen_address
from xdsbus.logs import setup_logging
from xdsbus.service import run_service
from xdsbus.service_flags import ServiceParser, add_common_flags, add_health_flag
from xdsbus_console.app import Console, serve

log = logging.getLogger("xdsbus_console")

DEFAULT_LISTEN = "127.0.0.1:15040"


def console_listen(value: str) -> Listen:
    """`HOST:PORT` of the console's pages (`off` is no choice: serving them is the console's job)."""
    listen = listen_address(value)
    if listen is None:
        raise argparse.ArgumentTypeError("the console needs a HOST:PORT")
    return listen


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every flag defaults to its environment variable. Exits with status 2 on a bad
    value."""
    p = ServiceParser(
        prog="xdsbus-console",
        description="Serve the read-only web console: ledger timeline, diffs, objects, sources, proxies.",
    )
    p.env_flag(
        "--listen",
        "XDSBUS_CONSOLE_LISTEN",
        type=console_listen,
        default=console_listen(DEFAULT_LISTEN),
        shown_default=DEFAULT_LISTEN,
        help="HOST:PORT of the console's pages and JSON API (loopback unless told otherwise)",
    )
    add_common_flags(p)
    add_health_flag(p)
    return p.parse(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the xdsbus-console command."""
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    settings = BusSettings.from_env(args.nats_url)
    health = Health()

    async def run(stop: asyncio.Event) -> None:
        bus = await connect_unless_stopped(settings, name="xdsbus-console", stop=stop)
        if bus is None:
            return
        health.bus = bus
        try:
            await serve(Console(bus, stop), args.listen.host, args.listen.port)
        finally:
            await bus.close()

    return run_service(run, health=health, http_listen=args.http_listen)


if __name__ == "__main__":
    raise SystemExit(main())
