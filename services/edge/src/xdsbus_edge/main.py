"""`xdsbus-edge`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import os
from collections.abc import Sequence

from xdsbus.bus import BusSettings, connect
from xdsbus.logs import setup_logging
from xdsbus.service import run_service
from xdsbus.service_flags import ServiceParser, add_common_flags
from xdsbus_edge.app import Edge, EdgeConfig, split_host_port
from xdsbus_edge.scopes import SCOPE_PATTERN


def _listen(value: str) -> str:
    try:
        split_host_port(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
    return value


def _scopes(value: str) -> tuple[str, ...]:
    scopes = tuple(s.strip() for s in value.split(",") if s.strip())
    for scope in scopes:
        if not SCOPE_PATTERN.match(scope):
            raise argparse.ArgumentTypeError(f"invalid scope {scope!r}")
    return scopes


def _switch(value: str) -> bool:
    return value == "true"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every flag defaults to its environment variable. Exits with status 2 on a bad
    value."""
    p = ServiceParser(prog="xdsbus-edge", description="Serve the ledger to Envoy over xDS.")
    p.env_flag(
        "--xds-listen", "XDSBUS_XDS_LISTEN", type=_listen, default="0.0.0.0:18000", help="gRPC xDS address"
    )
    p.env_flag(
        "--http-listen",
        "XDSBUS_HTTP_LISTEN",
        type=_listen,
        default="0.0.0.0:15014",
        help="address of /metrics, /debug/syncz, /debug/configz, /ready",
    )
    p.env_flag(
        "--scopes",
        "XDSBUS_SCOPES",
        type=_scopes,
        default=("default",),
        shown_default="default",
        help="comma-separated scopes loaded at start and required by /ready; others load when a proxy asks",
    )
    p.env_flag(
        "--lazy-scopes",
        "XDSBUS_LAZY_SCOPES",
        type=_switch,
        choices=("true", "false"),
        default=True,
        shown_default="true",
        help="follow scopes not listed in --scopes when a proxy asks for them",
    )
    add_common_flags(p)
    return p.parse(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the xdsbus-edge command."""
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    config = EdgeConfig(
        xds_listen=args.xds_listen,
        http_listen=args.http_listen,
        scopes=args.scopes,
        lazy_scopes=args.lazy_scopes,
    )
    settings = BusSettings.from_env(args.nats_url)

    async def serve(stop: asyncio.Event) -> None:
        bus = await connect(settings, name=f"xdsbus-edge/{os.getpid()}")
        edge = Edge(bus, config)
        try:
            await edge.start()
            await stop.wait()
        finally:
            await edge.stop()
            await bus.close()

    return run_service(serve)


if __name__ == "__main__":
    raise SystemExit(main())
