"""`xdsbus-builder`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os

from xdsbus.bus import BusSettings, connect
from xdsbus.logs import LOG_FORMATS, setup_logging
from xdsbus.secretbox import LOCAL_KEY_FILE, SecretBox, SecretKeyError
from xdsbus.service import run_service
from xdsbus.service_flags import default_instance_id
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_builder.builder import Builder, BuilderConfig

log = logging.getLogger("xdsbus_builder")


def _env(name: str, default: str) -> str:
    return os.environ.get(f"XDSBUS_{name}", default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every flag defaults to its environment variable."""
    p = argparse.ArgumentParser(prog="xdsbus-builder", description="Fold the event log into ledger versions.")
    p.add_argument("--nats-url", default=_env("NATS_URL", "nats://127.0.0.1:4222"))
    p.add_argument("--scope", default=_env("SCOPE", "default"))
    p.add_argument("--debounce-quiet", type=float, default=float(_env("DEBOUNCE_QUIET", "0.1")))
    p.add_argument("--debounce-max", type=float, default=float(_env("DEBOUNCE_MAX", "1.0")))
    p.add_argument("--checkpoint-events", type=int, default=int(_env("CHECKPOINT_EVENTS", "10000")))
    p.add_argument("--checkpoint-seconds", type=float, default=float(_env("CHECKPOINT_SECONDS", "30")))
    p.add_argument("--gateway-http-port", type=int, default=int(_env("GATEWAY_HTTP_PORT", "80")))
    p.add_argument("--gateway-https-port", type=int, default=int(_env("GATEWAY_HTTPS_PORT", "443")))
    p.add_argument(
        "--gateway-address",
        default=_env("GATEWAY_ADDRESS", ""),
        help="comma-separated IPs or host names clients reach the gateway at (Gateway status)",
    )
    p.add_argument("--lease-ttl", type=float, default=float(_env("LEASE_TTL", "6")))
    p.add_argument("--instance-id", default=_env("INSTANCE_ID", default_instance_id()))
    p.add_argument("--log-format", choices=LOG_FORMATS, default=_env("LOG_FORMAT", "text"))
    p.add_argument("--log-level", default=_env("LOG_LEVEL", "info"))
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the xdsbus-builder command."""
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    # The folded state is millions of long-lived objects: with the default thresholds the cyclic
    # collector rescans them constantly (measured: a quarter of fold throughput).
    gc.set_threshold(50_000, 20, 100)
    config = BuilderConfig(
        scope=args.scope,
        instance_id=args.instance_id,
        debounce_quiet=args.debounce_quiet,
        debounce_max=args.debounce_max,
        checkpoint_events=args.checkpoint_events,
        checkpoint_seconds=args.checkpoint_seconds,
        lease_ttl=args.lease_ttl,
        translator=TranslatorSettings(
            http_port=args.gateway_http_port,
            https_port=args.gateway_https_port,
            addresses=tuple(sorted({a.strip() for a in args.gateway_address.split(",") if a.strip()})),
        ),
    )
    settings = BusSettings.from_env(args.nats_url)
    settings = BusSettings(
        url=settings.url,
        replicas=settings.replicas,
        events_max_age=settings.events_max_age,
        lease_ttl=args.lease_ttl,
    )

    try:
        secret_box: SecretBox | None = SecretBox.from_env(default_key_file=LOCAL_KEY_FILE)
    except SecretKeyError as exc:
        log.warning("no secret key (%s): Secrets are rejected and TLS hosts are served over HTTP only", exc)
        secret_box = None

    async def serve(stop: asyncio.Event) -> None:
        bus = await connect(settings, name=f"xdsbus-builder/{args.instance_id}")
        try:
            await Builder(bus, config, secret_box=secret_box).run(stop)
        finally:
            await bus.close()

    return run_service(serve)


if __name__ == "__main__":
    raise SystemExit(main())
