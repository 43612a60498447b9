"""`xdsbus-console`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from xdsbus.bus import BusSettings, connect_unless_stopped
from xdsbus.health import Health, Listen, listen_address
from xdsbus.logs import setup_logging
from xdsbus.service import run_service
from xdsbus.service_flags import ServiceParser, add_common_flags, add_health_flag, readable_file
from xdsbus_console.app import Console, serve
from xdsbus_console.rollback import OperatorTokens, Rollback

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
    p.add_argument(
        "--allow-rollback",
        action="store_true",
        default=os.environ.get("XDSBUS_CONSOLE_ALLOW_ROLLBACK", "") == "true",
        help="offer rollback and unpin to holders of an operator token; run the console as the NATS user "
        "operator then (env XDSBUS_CONSOLE_ALLOW_ROLLBACK=true; default off: read-only)",
    )
    p.env_flag(
        "--operator-tokens-file",
        "XDSBUS_CONSOLE_OPERATOR_TOKENS_FILE",
        type=readable_file,
        default="",
        shown_default="none",
        help="file of NAME:TOKEN lines, the operators who may roll back (needed by --allow-rollback)",
    )
    add_common_flags(p)
    add_health_flag(p)
    args = p.parse(argv)
    args.operators = None
    if args.allow_rollback:
        if not args.operator_tokens_file:
            p.error("--allow-rollback needs --operator-tokens-file (XDSBUS_CONSOLE_OPERATOR_TOKENS_FILE)")
        try:
            args.operators = OperatorTokens.read(Path(args.operator_tokens_file))
        except ValueError as exc:
            p.error(str(exc))
    return args


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
            rollback = Rollback(bus, args.operators) if args.operators is not None else None
            if rollback is not None:
                log.warning("rollback allowed: operators holding a token may pin and unpin scopes")
            await serve(Console(bus, stop, rollback), args.listen.host, args.listen.port)
        finally:
            await bus.close()

    return run_service(run, health=health, http_listen=args.http_listen)


if __name__ == "__main__":
    raise SystemExit(main())
