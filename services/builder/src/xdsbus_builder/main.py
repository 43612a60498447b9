"""`xdsbus-builder`: flags (each also an XDSBUS_* environment variable) and start-up."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
from collections.abc import Sequence
from typing import Literal

from xdsbus.bus import BusSettings, connect_unless_stopped
from xdsbus.gc_pause import tune_for_large_heaps
from xdsbus.health import Health
from xdsbus.logs import setup_logging
from xdsbus.secretbox import LOCAL_KEY_FILE, SecretBox, SecretKeyError
from xdsbus.service import run_service
from xdsbus.service_flags import (
    DEFAULT_LEASE_TTL,
    ServiceParser,
    add_common_flags,
    add_health_flag,
    default_instance_id,
    port,
)
from xdsbus.translate.dataplane import DATAPLANES, ENVOY
from xdsbus.translate.ingress_class import DEFAULT_INGRESS_CLASS
from xdsbus.translate.route_table_choice import SPLIT_FROM_HOSTS
from xdsbus.translate.route_tables import KEYS
from xdsbus.translate.settings import AUTO, TranslatorSettings
from xdsbus_builder.builder import Builder, BuilderConfig
from xdsbus_builder.figures import BuilderFigures

log = logging.getLogger("xdsbus_builder")


def route_table_count(text: str) -> int | Literal["auto"]:
    """--route-tables: `auto`, or 0 (one table) up to one table per key."""
    if text.strip() == AUTO:
        return AUTO
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be auto or a number, not {text!r}") from None
    if not 0 <= value <= KEYS:
        raise argparse.ArgumentTypeError(f"must be between 0 and {KEYS}, not {value}")
    return value


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line flags; every flag defaults to its environment variable. Exits with status 2 on a bad
    value."""
    p = ServiceParser(prog="xdsbus-builder", description="Fold the event log into ledger versions.")
    p.env_flag("--scope", "XDSBUS_SCOPE", default="default", help="the ledger scope this builder writes")
    p.env_flag(
        "--debounce-quiet",
        "XDSBUS_DEBOUNCE_QUIET",
        type=float,
        default=0.1,
        help="a change after this many seconds without a version is published at once; changes within "
        "it are batched until this many seconds pass without events",
    )
    p.env_flag(
        "--debounce-max",
        "XDSBUS_DEBOUNCE_MAX",
        type=float,
        default=1.0,
        help="most seconds a steady stream of events delays a version",
    )
    p.env_flag(
        "--checkpoint-events",
        "XDSBUS_CHECKPOINT_EVENTS",
        type=int,
        default=10000,
        help="events folded between checkpoints",
    )
    p.env_flag(
        "--checkpoint-seconds",
        "XDSBUS_CHECKPOINT_SECONDS",
        type=float,
        default=30.0,
        help="most seconds between checkpoints",
    )
    p.env_flag(
        "--history-window",
        "XDSBUS_HISTORY_WINDOW",
        type=float,
        default=30 * 24 * 3600.0,
        shown_default="2592000 (30 days)",
        help="seconds of history kept: older versions, bases and checkpoints are purged",
    )
    p.env_flag(
        "--checkpoints-keep",
        "XDSBUS_CHECKPOINTS_KEEP",
        type=int,
        default=10,
        help="newest checkpoints kept whatever their age (besides one a day inside the window)",
    )
    p.env_flag(
        "--checkpoints-span",
        "XDSBUS_CHECKPOINTS_SPAN",
        type=int,
        default=100_000,
        help="inside the window, the first checkpoint of every this many events is kept too: a replay to "
        "any version in the window folds at most about this many events",
    )
    p.env_flag(
        "--base-every",
        "XDSBUS_BASE_EVERY",
        type=int,
        default=1000,
        help="versions between ledger bases (full manifests edges and restores start from)",
    )
    p.env_flag(
        "--gateway-http-port",
        "XDSBUS_GATEWAY_HTTP_PORT",
        type=port,
        default=80,
        help="the gateway's HTTP port (Ingress listeners)",
    )
    p.env_flag(
        "--gateway-https-port",
        "XDSBUS_GATEWAY_HTTPS_PORT",
        type=port,
        default=443,
        help="the gateway's HTTPS port (Ingress listeners)",
    )
    p.env_flag(
        "--gateway-address",
        "XDSBUS_GATEWAY_ADDRESS",
        default="",
        shown_default="none",
        help="comma-separated IPs or host names clients reach the gateway at (Gateway status)",
    )
    p.env_flag(
        "--dataplane",
        "XDSBUS_DATAPLANE",
        default=ENVOY,
        choices=DATAPLANES,
        help="the Envoy build served: stock envoy, or higress (Higress's build, needed by Http2Rpc)",
    )
    p.env_flag(
        "--route-tables",
        "XDSBUS_ROUTE_TABLES",
        type=route_table_count,
        default=AUTO,
        help="split the Ingress HTTP port's route configuration into this many tables by a key of the host, "
        "chosen per request through Scoped RDS, so one host's change rebuilds a small table in Envoy; "
        f"0: one table; auto: one table below {SPLIT_FROM_HOSTS} hosts, split above "
        "(docs/route-table-split.md)",
    )
    p.env_flag(
        "--ingress-class",
        "XDSBUS_INGRESS_CLASS",
        default=DEFAULT_INGRESS_CLASS,
        help="the ingress class served (Higress' rule); empty: every Ingress; others are reported ignored",
    )
    p.env_flag(
        "--lease-ttl",
        "XDSBUS_LEASE_TTL",
        type=float,
        default=DEFAULT_LEASE_TTL,
        help="seconds after which a standby takes over from a leader that died",
    )
    p.env_flag(
        "--instance-id",
        "XDSBUS_INSTANCE_ID",
        default=default_instance_id(),
        shown_default="<hostname>-<pid>",
        help="this replica's name in the lease and in logs",
    )
    add_common_flags(p)
    add_health_flag(p)
    return p.parse(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the xdsbus-builder command."""
    args = parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    # The folded state is millions of long-lived objects.
    tune_for_large_heaps()
    config = BuilderConfig(
        scope=args.scope,
        instance_id=args.instance_id,
        debounce_quiet=args.debounce_quiet,
        debounce_max=args.debounce_max,
        checkpoint_events=args.checkpoint_events,
        checkpoint_seconds=args.checkpoint_seconds,
        lease_ttl=args.lease_ttl,
        history_window=args.history_window,
        checkpoints_keep=args.checkpoints_keep,
        checkpoints_span=args.checkpoints_span,
        base_every=args.base_every,
        translator=TranslatorSettings(
            http_port=args.gateway_http_port,
            https_port=args.gateway_https_port,
            addresses=tuple(sorted({a.strip() for a in args.gateway_address.split(",") if a.strip()})),
            ingress_class=args.ingress_class.strip(),
            dataplane=args.dataplane,
            route_tables=args.route_tables,
        ),
    )
    # The lease TTL is a layout setting (the leases bucket's): a flag that differs is named at start.
    settings = dataclasses.replace(BusSettings.from_env(args.nats_url), lease_ttl=args.lease_ttl)

    try:
        keyring = SecretBox.from_env(default_key_file=LOCAL_KEY_FILE)
        log.info("keyring: %s", keyring.describe())
        secret_box: SecretBox | None = keyring
    except (SecretKeyError, OSError) as exc:
        log.warning("no secret key (%s): Secrets are rejected and TLS hosts are served over HTTP only", exc)
        secret_box = None

    # /ready: connected, and neither a gap nor a full event log blocks publishing; a standby is ready.
    health = Health()
    figures = BuilderFigures(config.scope)
    figures.register(health.registry)
    health.add_check(figures.blocked)

    async def serve(stop: asyncio.Event) -> None:
        # A stop asked while NATS is unreachable (or refuses the credentials) ends the service at once.
        bus = await connect_unless_stopped(settings, name=f"xdsbus-builder/{args.instance_id}", stop=stop)
        if bus is None:
            return
        health.bus = bus
        try:
            await Builder(bus, config, secret_box=secret_box, figures=figures).run(stop)
        finally:
            await bus.close()

    return run_service(serve, health=health, http_listen=args.http_listen)


if __name__ == "__main__":
    raise SystemExit(main())
