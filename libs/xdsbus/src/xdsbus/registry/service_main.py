"""The command line and lifecycle every registry watcher service shares (watch-nacos, watch-consul,
watch-eureka): a service's `main.py` is

    def main(argv=None) -> int:
        return run_registry_service(argv, {"nacos", "nacos2", "nacos3"}, NacosRegistry, "xdsbus-watch-nacos")

Flags default to their XDSBUS_* environment variables. The secret key (to open the Secrets named by
`authSecretName`) comes from XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE, as for the other watchers.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import logging
import re
from collections.abc import Callable, Iterable, Sequence

from xdsbus.bus import Bus, BusSettings, connect_unless_stopped
from xdsbus.health import REGISTRY, Health, Listen
from xdsbus.logs import setup_logging
from xdsbus.nats_options import redact_url
from xdsbus.registry.bridge_follower import DEFAULT_SYSTEM_NAMESPACE, BridgeFollower
from xdsbus.registry.leadership import Leadership, lease_name
from xdsbus.registry.supervisor import RegistryFactory, Supervisor
from xdsbus.secretbox import SecretBox
from xdsbus.service import run_service
from xdsbus.service_flags import (
    DEFAULT_LEASE_TTL,
    ServiceParser,
    add_common_flags,
    add_health_flag,
    add_lease_flags,
    watcher_secret_box,
)

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"

# The group ends up in a KV key (the lease); namespaces follow Kubernetes' rules.
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    """A registry watcher's configuration, from flags with environment fallbacks."""

    nats_url: str
    instance_id: str
    group: str
    lease_ttl: float
    system_namespace: str
    log_format: str
    log_level: str
    http_listen: Listen | None


def _group(value: str) -> str:
    if not _GROUP.match(value):
        raise argparse.ArgumentTypeError(f"{value!r}: use letters, digits, '-' and '_'")
    return value


def _namespace(value: str) -> str:
    if not _NAMESPACE.match(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a namespace name")
    return value


def build_parser(
    prog: str, types: Iterable[str], configure: Callable[[ServiceParser], None] | None = None
) -> ServiceParser:
    """Flags; each defaults to its XDSBUS_* environment variable. `configure` adds a service's own."""
    service = prog.removeprefix("xdsbus-")
    parser = ServiceParser(
        prog=prog,
        description=f"Run the {', '.join(sorted(types))} registries listed in the McpBridge "
        "(<system namespace>/default, as folded from the event log) and publish their services to the xdsbus "
        "event log as source <type>/<registry name>. One replica of each group publishes at a time.",
    )
    parser.env_flag(
        "--group",
        "XDSBUS_GROUP",
        type=_group,
        default=DEFAULT_GROUP,
        help=f"replicas of one group share the lease {service}.<group>: one of them publishes",
    )
    add_lease_flags(parser, "its group's lease and each registry's source lease watch.<type>.<registry name>")
    parser.env_flag(
        "--system-namespace",
        "XDSBUS_SYSTEM_NAMESPACE",
        type=_namespace,
        default=DEFAULT_SYSTEM_NAMESPACE,
        help="Higress' namespace: the McpBridge <namespace>/default and the authSecretName Secrets are read "
        "there",
    )
    add_common_flags(parser)
    add_health_flag(parser)
    if configure is not None:
        configure(parser)
    return parser


def parse_settings(
    argv: Sequence[str] | None,
    prog: str,
    types: Iterable[str],
    configure: Callable[[ServiceParser], None] | None = None,
) -> Settings:
    """Parse and validate the command line; exits with status 2 and a message naming the flag or variable
    on a bad value."""
    args = build_parser(prog, types, configure).parse(argv)
    return Settings(
        nats_url=args.nats_url,
        instance_id=args.instance_id,
        group=args.group,
        lease_ttl=args.lease_ttl,
        system_namespace=args.system_namespace,
        log_format=args.log_format,
        log_level=args.log_level,
        http_listen=args.http_listen,
    )


async def run_registries(
    bus: Bus,
    *,
    service: str,
    types: Iterable[str],
    factory: RegistryFactory,
    stop: asyncio.Event,
    instance_id: str,
    group: str = DEFAULT_GROUP,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    system_namespace: str = DEFAULT_SYSTEM_NAMESPACE,
    secret_box: SecretBox | None = None,
    retry_base: float = 0.5,
    retry_cap: float = 30.0,
) -> None:
    """Follow McpBridge and, while holding the lease `<service>.<group>`, run its registries of `types`;
    until `stop` is set. `service` is `watch-nacos`, `watch-consul` or `watch-eureka`."""
    follower = BridgeFollower(bus, types, system_namespace=system_namespace, secret_box=secret_box)
    supervisor = Supervisor(
        bus,
        factory,
        follower.credentials,
        stop=stop,
        retry_base=retry_base,
        retry_cap=retry_cap,
        instance_id=instance_id,
        lease_ttl=lease_ttl,
    )
    leadership = Leadership(
        bus, lease_name(service, group), instance_id, follower, supervisor, ttl=lease_ttl, stop=stop
    )
    # The group's lease on /metrics (xdsbus.health): a standby runs no registry, so no watcher shows it.
    REGISTRY.gauge(
        "xdsbus_registry_group_lease_holder",
        "1 while this replica holds its group's lease and runs the registries, 0 while it stands by.",
        ["lease"],
        read=lambda: {(leadership.lease.name,): float(leadership.leading.is_set())},
    )
    REGISTRY.gauge(
        "xdsbus_registry_group_lease_term",
        "The term (lease revision) of this replica's last hold of its group's lease, 0 before it first led.",
        ["lease"],
        read=lambda: {(leadership.lease.name,): float(leadership.lease.term)},
    )
    tasks = [
        asyncio.create_task(follower.run(stop), name="follow McpBridge"),
        asyncio.create_task(leadership.run(), name="leadership"),
    ]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a crash of either ends the service, with its error
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await supervisor.stop_all()


async def serve(
    settings: Settings,
    prog: str,
    types: frozenset[str],
    factory: RegistryFactory,
    secret_box: SecretBox,
    stop: asyncio.Event,
    health: Health | None = None,
) -> None:
    """Connect to NATS and run until `stop` is set; `health` is told of the connection."""
    bus_settings = dataclasses.replace(BusSettings.from_env(settings.nats_url), lease_ttl=settings.lease_ttl)
    bus = await connect_unless_stopped(bus_settings, f"{prog} {settings.instance_id}", stop)
    if bus is None:
        return
    if health is not None:
        health.bus = bus
    try:
        log.info(
            "following McpBridge for registries of type %s",
            ", ".join(sorted(types)),
            extra={
                "nats_url": redact_url(settings.nats_url),
                "instance_id": settings.instance_id,
                "group": settings.group,
                "system_namespace": settings.system_namespace,
            },
        )
        await run_registries(
            bus,
            service=prog.removeprefix("xdsbus-"),
            types=types,
            factory=factory,
            stop=stop,
            instance_id=settings.instance_id,
            group=settings.group,
            lease_ttl=settings.lease_ttl,
            system_namespace=settings.system_namespace,
            secret_box=secret_box,
        )
        log.info("stopped")
    finally:
        await bus.close()


def run_registry_service(
    argv: Sequence[str] | None,
    types: Iterable[str],
    factory: RegistryFactory,
    prog: str,
    configure: Callable[[ServiceParser], None] | None = None,
) -> int:
    """Entry point of a registry watcher service (`prog` like `xdsbus-watch-nacos`; `configure` declares
    its own flags or variables); returns the exit status: 0 after SIGTERM/SIGINT, 2 on a bad flag or
    variable or no usable secret key."""
    kinds = frozenset(types)
    settings = parse_settings(argv, prog, kinds, configure)
    setup_logging(settings.log_format, settings.log_level)
    secret_box = watcher_secret_box(log)
    if secret_box is None:
        return 2
    health = Health()
    return run_service(
        functools.partial(serve, settings, prog, kinds, factory, secret_box, health=health),
        health=health,
        http_listen=settings.http_listen,
    )
