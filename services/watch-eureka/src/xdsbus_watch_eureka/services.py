"""Eureka applications as the registry services the builder turns into clusters (docs/higress.md §2.2–2.3)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from xdsbus.contract.hostnames import higress_hostname
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryEndpoint, RegistryService
from xdsbus_watch_eureka.codec import EurekaInstance

REGISTRY_TYPE = "eureka"


def hostname(app: str) -> str:
    """Higress' `<APPNAME>.eureka` (Eureka upper-cases app names; `_` becomes `-`)."""
    return higress_hostname(app, REGISTRY_TYPE)


def _endpoint_key(e: RegistryEndpoint) -> tuple[str, int]:
    return (e.address, e.port)


def build_service(
    config: RegistryConfig, app: str, instances: Iterable[EurekaInstance]
) -> RegistryService | None:
    """The service of one application, or None when none of its instances can be an endpoint.

    Every status is published, `healthy` only for UP (Higress has no status filter; the builder leaves
    unhealthy endpoints out). The service port and protocol come from one "first" instance as in
    Higress; we pick it deterministically (UP before others, then by instanceId) so that the cluster
    name `outbound|<port>||<host>` does not move with the server's list order.
    """
    usable = sorted((i for i in instances if i.usable), key=lambda i: (not i.healthy, i.instance_id))
    if not usable:
        return None
    first = usable[0]
    # One endpoint per address and port: an instance restarted under a new instanceId sits next to its
    # old registration until that is cancelled or evicted; the UP one (first in `usable`) is the truth.
    by_address: dict[tuple[str, int], EurekaInstance] = {}
    for i in usable:
        by_address.setdefault((i.address, i.port), i)
    endpoints = sorted(
        (
            RegistryEndpoint(
                address=i.address,
                port=i.port,
                weight=1,
                healthy=i.healthy,
                zone=i.zone,
                metadata=i.metadata,
            )
            for i in by_address.values()
        ),
        key=_endpoint_key,
    )
    return RegistryService(
        hostname=hostname(app),
        registry_type=REGISTRY_TYPE,
        registry=config.name,
        service=app,
        port=config.vport_for(app) or first.port,
        # An instance that only enabled its secure port speaks TLS unless it says otherwise.
        protocol=first.protocol or ("HTTPS" if first.secure else "HTTP"),
        endpoints=endpoints,
    )


def build_services(
    config: RegistryConfig, apps: Mapping[str, Mapping[str, EurekaInstance]]
) -> tuple[dict[str, RegistryService], list[tuple[str, str]]]:
    """Every application's service by hostname, and (what, reason) for app names that collide on one
    hostname (`A_B` and `A-B`): the first in name order wins."""
    services: dict[str, RegistryService] = {}
    problems: list[tuple[str, str]] = []
    for app in sorted(apps):
        service = build_service(config, app, apps[app].values())
        if service is None:
            continue
        if service.hostname in services:
            other = services[service.hostname].service
            problems.append((app, f"same hostname {service.hostname} as application {other}; ignored"))
            continue
        services[service.hostname] = service
    return services, problems
