"""`xdsbus-edge`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import os

from xdsbus.bus import BusSettings, connect
from xdsbus.logs import LOG_FORMATS, setup_logging
from xdsbus.service import run_service
from xdsbus_edge.app import Edge, EdgeConfig, split_host_port
from xdsbus_edge.scopes import SCOPE_PATTERN


def _env(name: str, default: str) -> str:
    return os.environ.get(f"XDSBUS_{name}", default)


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every flag defaults to its environment variable."""
    p = argparse.ArgumentParser(prog="xdsbus-edge", description="Serve the ledger to Envoy over xDS.")
    p.add_argument("--nats-url", default=_env("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument(
        "--xds-listen", type=_listen, default=_env("XDS_LISTEN", "0.0.0.0:18000"), help="gRPC xDS address"
    )
    p.add_argument(
        "--http-listen",
        type=_listen,
        default=_env("HTTP_LISTEN", "0.0.0.0:15014"),
        help="address of /metrics, /debug/syncz, /debug/configz, /ready",
    )
    p.add_argument(
        "--scopes",
        type=_scopes,
        default=_scopes(_env("SCOPES", "default")),
        help="comma-separated scopes loaded at start and required by /ready; others load when a proxy asks",
    )
    p.add_argument(
        "--lazy-scopes",
        choices=("true", "false"),
        default=_env("LAZY_SCOPES", "true"),
        help="follow scopes not listed in --scopes when a proxy asks for them",
    )
    p.add_argument("--log-format", choices=LOG_FORMATS, default=_env("LOG_FORMAT", "text"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the xdsbus-edge command."""
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    config = EdgeConfig(
        xds_listen=args.xds_listen,
        http_listen=args.http_listen,
        scopes=args.scopes,
        lazy_scopes=args.lazy_scopes == "true",
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
