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
import os
import re
from collections.abc import Iterable, Sequence

from xdsbus.bus import Bus, BusSettings, connect_unless_stopped
from xdsbus.logs import setup_logging
from xdsbus.registry.bridge_follower import DEFAULT_SYSTEM_NAMESPACE, BridgeFollower
from xdsbus.registry.leadership import Leadership, lease_name
from xdsbus.registry.supervisor import RegistryFactory, Supervisor
from xdsbus.secretbox import SecretBox
from xdsbus.service import run_service
from xdsbus.service_flags import add_common_flags, check_common_flags, default_instance_id, watcher_secret_box

log = logging.getLogger(__name__)

DEFAULT_GROUP = "default"
DEFAULT_LEASE_TTL = 6.0

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


def build_parser(prog: str, types: Iterable[str]) -> argparse.ArgumentParser:
    """Flags; each defaults to its XDSBUS_* environment variable."""
    env = os.environ.get
    service = prog.removeprefix("xdsbus-")
    parser = argparse.ArgumentParser(
        prog=prog,
        description=f"Run the {', '.join(sorted(types))} registries listed in the McpBridge "
        "(<system namespace>/default, as folded from the event log) and publish their services to the xdsbus "
        "event log as source <type>/<registry name>. One replica of each group publishes at a time.",
    )
    parser.add_argument(
        "--instance-id",
        default=env("XDSBUS_INSTANCE_ID", default_instance_id()),
        help="this replica's name in the lease and in logs "
        "(env XDSBUS_INSTANCE_ID; default <hostname>-<pid>)",
    )
    parser.add_argument(
        "--group",
        default=env("XDSBUS_GROUP", DEFAULT_GROUP),
        help=f"replicas of one group share the lease {service}.<group>: one of them publishes "
        f"(env XDSBUS_GROUP; default {DEFAULT_GROUP})",
    )
    parser.add_argument(
        "--lease-ttl",
        default=env("XDSBUS_LEASE_TTL", str(DEFAULT_LEASE_TTL)),
        help="seconds after which a standby takes over from a replica that died; the leases bucket's TTL "
        f"when this creates it (env XDSBUS_LEASE_TTL; default {DEFAULT_LEASE_TTL:g})",
    )
    parser.add_argument(
        "--system-namespace",
        default=env("XDSBUS_SYSTEM_NAMESPACE", DEFAULT_SYSTEM_NAMESPACE),
        help="Higress' namespace: the McpBridge <namespace>/default and the authSecretName Secrets are read "
        f"there (env XDSBUS_SYSTEM_NAMESPACE; default {DEFAULT_SYSTEM_NAMESPACE})",
    )
    add_common_flags(parser)
    return parser


def parse_settings(argv: Sequence[str] | None, prog: str, types: Iterable[str]) -> Settings:
    """Parse and validate the command line; exits with status 2 and a message on a bad value.

    Validation is done here rather than with argparse `type=`/`choices=`, which do not check values
    that come from the environment."""
    parser = build_parser(prog, types)
    args = parser.parse_args(argv)
    try:
        lease_ttl = float(args.lease_ttl)
    except ValueError:
        parser.error(f"--lease-ttl: {args.lease_ttl!r} is not a number of seconds")
    if not lease_ttl >= 1:
        parser.error("--lease-ttl must be at least 1 second")
    if not _GROUP.match(args.group):
        parser.error(f"--group {args.group!r}: use letters, digits, '-' and '_'")
    if not _NAMESPACE.match(args.system_namespace):
        parser.error(f"--system-namespace {args.system_namespace!r} is not a namespace name")
    if not args.instance_id:
        parser.error("--instance-id must not be empty")
    check_common_flags(parser, args)
    return Settings(
        nats_url=args.nats_url,
        instance_id=args.instance_id,
        group=args.group,
        lease_ttl=lease_ttl,
        system_namespace=args.system_namespace,
        log_format=args.log_format,
        log_level=args.log_level,
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
        bus, factory, follower.credentials, stop=stop, retry_base=retry_base, retry_cap=retry_cap
    )
    leadership = Leadership(
        bus, lease_name(service, group), instance_id, follower, supervisor, ttl=lease_ttl, stop=stop
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
) -> None:
    """Connect to NATS and run until `stop` is set."""
    bus_settings = dataclasses.replace(BusSettings.from_env(settings.nats_url), lease_ttl=settings.lease_ttl)
    bus = await connect_unless_stopped(bus_settings, f"{prog} {settings.instance_id}", stop)
    if bus is None:
        return
    try:
        log.info(
            "following McpBridge for registries of type %s",
            ", ".join(sorted(types)),
            extra={
                "nats_url": settings.nats_url,
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
    argv: Sequence[str] | None, types: Iterable[str], factory: RegistryFactory, prog: str
) -> int:
    """Entry point of a registry watcher service (`prog` like `xdsbus-watch-nacos`); returns the exit
    status: 0 after SIGTERM/SIGINT, 2 on bad flags or no usable secret key."""
    kinds = frozenset(types)
    settings = parse_settings(argv, prog, kinds)
    setup_logging(settings.log_format, settings.log_level)
    secret_box = watcher_secret_box(log)
    if secret_box is None:
        return 2
    return run_service(functools.partial(serve, settings, prog, kinds, factory, secret_box))
