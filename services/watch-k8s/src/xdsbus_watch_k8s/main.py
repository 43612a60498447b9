"""`xdsbus-watch-k8s`: command line, configuration and lifecycle of the Kubernetes source."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import os
import re
from collections.abc import Sequence

from kubernetes_asyncio import client

from xdsbus.bus import BusSettings, connect_unless_stopped
from xdsbus.gc_pause import tune_for_large_heaps
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
    positive_int,
    watcher_secret_box,
)
from xdsbus.translate.ingress_class import DEFAULT_INGRESS_CLASS
from xdsbus_watch_k8s.api import ConfigError, load_configuration
from xdsbus_watch_k8s.k8s_watcher import K8sWatcher
from xdsbus_watch_k8s.list_watch import DEFAULT_WATCH_TIMEOUT
from xdsbus_watch_k8s.resources import DEFAULT_SYSTEM_NAMESPACE

log = logging.getLogger("xdsbus_watch_k8s")


# The cluster name ends up in NATS subjects and in a KV key (the status lease).
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """The service's configuration, from flags with environment fallbacks."""

    cluster: str
    kubeconfig: str | None
    watch_namespace: str
    system_namespace: str
    secret_namespaces: tuple[str, ...]
    ingress_class: str
    gateway_addresses: tuple[str, ...]
    resync_timeout: int
    instance_id: str
    lease_ttl: float
    nats_url: str
    log_format: str
    log_level: str
    http_listen: Listen | None


def _namespace(value: str) -> str:
    if value and not _NAMESPACE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a namespace name")
    return value


def _namespaces(value: str) -> tuple[str, ...]:
    names = tuple(sorted({n.strip() for n in value.split(",") if n.strip()}))
    for name in names:
        _namespace(name)
    return names


def build_parser() -> ServiceParser:
    """Flags; each defaults to its XDSBUS_* environment variable."""
    env = os.environ.get
    parser = ServiceParser(
        prog="xdsbus-watch-k8s",
        description="Publish a Kubernetes cluster's Ingresses, Services, EndpointSlices, TLS Secrets, "
        "Higress configuration and CRDs and Gateway API objects to the xdsbus event log as source "
        "k8s/<cluster>.",
    )
    parser.env_flag(
        "--cluster",
        "XDSBUS_CLUSTER",
        default="default",
        help="cluster name, published as k8s/<cluster>",
    )
    parser.add_argument(
        "--kubeconfig",
        default=env("XDSBUS_KUBECONFIG") or env("KUBECONFIG"),
        help="kubeconfig file(s) (env XDSBUS_KUBECONFIG, then KUBECONFIG; default: in-cluster "
        "configuration from the pod's service account)",
    )
    parser.env_flag(
        "--watch-namespace",
        "XDSBUS_WATCH_NAMESPACE",
        type=_namespace,
        default="",
        shown_default="empty: all namespaces",
        help="the one namespace to watch for Ingresses, Services, EndpointSlices, Secrets and Gateway API "
        "objects",
    )
    parser.env_flag(
        "--system-namespace",
        "XDSBUS_SYSTEM_NAMESPACE",
        type=_namespace,
        default=DEFAULT_SYSTEM_NAMESPACE,
        help="Higress' namespace: higress-config, higress-https, McpBridge, WasmPlugin, Http2Rpc and all "
        "Secrets are read there",
    )
    parser.env_flag(
        "--secret-namespaces",
        "XDSBUS_SECRET_NAMESPACES",
        type=_namespaces,
        default=(),
        shown_default="empty: every namespace watched, and the system namespace",
        help="comma-separated namespaces, the only ones whose Secrets are read (one list+watch each), so "
        "that RBAC can grant Secrets per namespace; name the system namespace too if registry "
        "credentials live there",
    )
    parser.env_flag(
        "--ingress-class",
        "XDSBUS_INGRESS_CLASS",
        default=DEFAULT_INGRESS_CLASS,
        help="the ingress class whose Ingresses get the gateway's address in their status (the builder's "
        "--ingress-class decides what is served; keep them equal); empty: every Ingress",
    )
    parser.env_flag(
        "--gateway-address",
        "XDSBUS_GATEWAY_ADDRESS",
        default="",
        shown_default="empty: no status writes",
        help="comma-separated IPs and host names written to status.loadBalancer of accepted Ingresses by "
        "the replica holding the status lease",
    )
    parser.env_flag(
        "--resync-timeout",
        "XDSBUS_RESYNC_TIMEOUT",
        type=positive_int,
        default=DEFAULT_WATCH_TIMEOUT,
        help="seconds each watch request lasts (timeoutSeconds) before it is renewed from the last "
        "resourceVersion",
    )
    add_lease_flags(parser, "the source lease watch.k8s.<cluster> and the status lease")
    add_common_flags(parser)
    add_health_flag(parser)
    return parser


def parse_settings(argv: Sequence[str] | None = None) -> Settings:
    """Parse and validate the command line; exits with status 2 and a message on a bad value."""
    parser = build_parser()
    args = parser.parse(argv)
    if not _CLUSTER_NAME.match(args.cluster):
        parser.error(f"{parser.source('cluster')} {args.cluster!r}: use letters, digits, '-' and '_'")
    if not args.system_namespace:
        parser.fail("system_namespace", "must not be empty")
    addresses = tuple(a.strip() for a in args.gateway_address.split(",") if a.strip())
    return Settings(
        cluster=args.cluster,
        kubeconfig=args.kubeconfig or None,
        watch_namespace=args.watch_namespace,
        system_namespace=args.system_namespace,
        secret_namespaces=args.secret_namespaces,
        ingress_class=args.ingress_class,
        gateway_addresses=addresses,
        resync_timeout=args.resync_timeout,
        instance_id=args.instance_id,
        lease_ttl=args.lease_ttl,
        nats_url=args.nats_url,
        log_format=args.log_format,
        log_level=args.log_level,
        http_listen=args.http_listen,
    )


async def serve(
    settings: Settings,
    configuration: client.Configuration,
    secret_box: SecretBox,
    health: Health,
    stop: asyncio.Event,
) -> None:
    """Connect to NATS and run the watcher until `stop` is set."""
    bus_settings = dataclasses.replace(BusSettings.from_env(settings.nats_url), lease_ttl=settings.lease_ttl)
    bus = await connect_unless_stopped(bus_settings, f"xdsbus-watch-k8s {settings.instance_id}", stop)
    if bus is None:
        return
    health.bus = bus
    try:
        watcher = K8sWatcher(
            bus,
            configuration,
            cluster=settings.cluster,
            watch_namespace=settings.watch_namespace,
            system_namespace=settings.system_namespace,
            secret_namespaces=settings.secret_namespaces,
            ingress_class=settings.ingress_class,
            gateway_addresses=settings.gateway_addresses,
            watch_timeout=settings.resync_timeout,
            instance_id=settings.instance_id,
            lease_ttl=settings.lease_ttl,
            secret_box=secret_box,
            stop=stop,
        )
        log.info(
            "watching %s as %s",
            configuration.host,
            watcher.source,
            extra={
                "nats_url": redact_url(settings.nats_url),
                "watch_namespace": settings.watch_namespace or "*",
                "system_namespace": settings.system_namespace,
                "secret_namespaces": ",".join(settings.secret_namespaces) or "*",
                "ingress_class": settings.ingress_class,
                "instance_id": settings.instance_id,
            },
        )
        await watcher.run()
        log.info("stopped")
    finally:
        await bus.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `xdsbus-watch-k8s`; returns the exit status (0 after SIGTERM/SIGINT)."""
    settings = parse_settings(argv)
    setup_logging(settings.log_format, settings.log_level)
    # The body of every object watched stays in memory (what the next resync is compared with).
    tune_for_large_heaps()
    if settings.secret_namespaces and settings.system_namespace not in settings.secret_namespaces:
        log.warning(
            "Secrets are read only in %s, not in the system namespace %s: registries' credentials there "
            "are not published",
            ",".join(settings.secret_namespaces),
            settings.system_namespace,
        )
    secret_box = watcher_secret_box(log)
    if secret_box is None:
        return 2
    try:
        configuration = asyncio.run(load_configuration(settings.kubeconfig))
    except ConfigError as exc:
        log.error("cannot configure the Kubernetes client: %s", exc)
        return 2
    health = Health()
    return run_service(
        functools.partial(serve, settings, configuration, secret_box, health),
        health=health,
        http_listen=settings.http_listen,
    )


if __name__ == "__main__":
    raise SystemExit(main())
