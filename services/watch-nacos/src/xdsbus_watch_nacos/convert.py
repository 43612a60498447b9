"""Nacos instances -> one `RegistryService`, the way Higress' nacos v2 watcher maps them.

Pure functions, so the mapping is tested without a server. Higress (`registry/nacos/v2/watcher.go`,
docs/higress.md §2.2–2.3):

* host `<service>.<group>.<nacosNamespace>.nacos`, `_` made `-` in the group/namespace suffix only (the
  service name is kept as it is, as Higress does: routes name these hosts);
* port and protocol from the first instance (we sort instances by address and port first, so the choice
  does not depend on the order Nacos happens to send them in), `vport` overriding the number;
* weight `round(weight)`, at least 1; labels = instance metadata;
* instances with metadata `register-resource: mcp-bridge` are Higress' own registrations and skipped.

Garbage that parsed as a Nacos instance but cannot be an endpoint (an empty or bogus address, a port out of
range, a weight that is not a finite number in Nacos' 0..10000) is returned as problems and left out; the
other instances are kept.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from xdsbus.contract.hostnames import higress_hostname
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import METADATA_PROTOCOLS, RegistryEndpoint, RegistryService

# Nacos' own bounds for an instance weight (`Constants.MAX_WEIGHT_VALUE`).
MAX_WEIGHT = 10000.0

MCP_BRIDGE_MARK = ("register-resource", "mcp-bridge")

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


class NacosInstance(Protocol):
    """What we read of nacos-sdk-python's `Instance` (a pydantic model)."""

    ip: str
    port: int
    weight: float
    healthy: bool
    enabled: bool
    metadata: dict[Any, Any]


@dataclass(frozen=True, slots=True)
class Problem:
    """An instance left out: `what` names it, `reason` says why."""

    what: str
    reason: str


def higress_nacos_hostname(service: str, group: str, namespace: str) -> str:
    """`<service>.<group>.<namespace>.nacos` with `_` -> `-` in the suffix only, as Higress builds it."""
    return f"{service}.{higress_hostname(group, namespace, 'nacos')}"


def protocol_of(metadata: Mapping[str, str]) -> str:
    """The service protocol an instance's metadata names. Dubbo and unknown values fall back to HTTP, as
    in Higress (which turns Dubbo into HTTP through Http2Rpc anyway)."""
    return METADATA_PROTOCOLS.get(metadata.get("protocol", "").strip().lower(), "HTTP")


def higress_weight(weight: float) -> int:
    """Go's math.Round (halves away from zero), at least 1 (Nacos weight 0 still gets traffic in Higress)."""
    return max(1, math.floor(weight + 0.5))


def _metadata(raw: Any) -> dict[str, str]:
    # The SDK types metadata as a plain dict: other clients may register numbers or booleans.
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in raw.items()}


def _address_problem(ip: Any) -> str | None:
    if not isinstance(ip, str) or not ip.strip():
        return "empty address"
    try:
        ipaddress.ip_address(ip)
        return None
    except ValueError:
        pass
    # Higress resolves non-IP addresses by DNS; a dotted-digits string that is no IP is garbage, not a name.
    if _HOSTNAME.match(ip) and not all(label.isdigit() for label in ip.split(".")):
        return None
    return f"invalid address {ip!r}"


def to_endpoint(inst: NacosInstance) -> RegistryEndpoint | str:
    """The endpoint, or why the instance cannot be one."""
    reason = _address_problem(inst.ip)
    if reason is not None:
        return reason
    if not isinstance(inst.port, int) or not 0 < inst.port <= 65535:
        return f"invalid port {inst.port!r}"
    weight = inst.weight
    if not isinstance(weight, int | float) or not math.isfinite(weight) or not 0 <= weight <= MAX_WEIGHT:
        return f"invalid weight {weight!r} (Nacos allows 0..10000)"
    return RegistryEndpoint(
        address=inst.ip,
        port=inst.port,
        weight=higress_weight(float(weight)),
        healthy=bool(inst.healthy) and bool(inst.enabled),
        metadata=_metadata(inst.metadata),
    )


def _rank(endpoint: RegistryEndpoint) -> tuple[int, bool, str]:
    # A total order over duplicates (Struct ordering would compare the metadata dicts and fail).
    return (-endpoint.weight, not endpoint.healthy, json.dumps(endpoint.metadata, sort_keys=True))


def build_service(
    config: RegistryConfig, group: str, service: str, namespace: str, instances: Iterable[NacosInstance]
) -> tuple[RegistryService | None, list[Problem]]:
    """The service for one subscription's current instances; None when it has no usable instance (it is
    then not published: an empty service is removed, as Higress deletes it on "hosts is empty")."""
    hostname = higress_nacos_hostname(service, group, namespace)
    problems: list[Problem] = []
    by_address: dict[tuple[str, int], RegistryEndpoint] = {}
    for inst in instances:
        meta = inst.metadata if isinstance(inst.metadata, Mapping) else {}
        if meta.get(MCP_BRIDGE_MARK[0]) == MCP_BRIDGE_MARK[1]:
            continue
        endpoint = to_endpoint(inst)
        if isinstance(endpoint, str):
            problems.append(Problem(f"{hostname} instance {inst.ip!r}:{inst.port!r}", endpoint))
            continue
        # The same address in two Nacos clusters is one endpoint for Envoy; keep the first (sorted below).
        key = (endpoint.address, endpoint.port)
        if key not in by_address or _rank(endpoint) < _rank(by_address[key]):
            by_address[key] = endpoint
    if not by_address:
        return None, problems
    endpoints = [by_address[k] for k in sorted(by_address)]
    first = endpoints[0]
    return (
        RegistryService(
            hostname=hostname,
            registry_type=config.type,
            registry=config.name,
            service=service,
            port=config.vport_for(service) or first.port,
            protocol=protocol_of(first.metadata),
            endpoints=endpoints,
        ),
        problems,
    )
