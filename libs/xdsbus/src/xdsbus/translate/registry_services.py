"""Registry services into the service model (docs/higress.md §2.2–2.3).

Two inputs:
* `RegistryService` events from the Nacos, Consul and Eureka watchers: one service per hostname, one port,
  its instances as endpoints. Unhealthy instances are left out (which instances count as healthy is the
  watcher's call: Consul passing-only, Nacos and Eureka as reported). Instances registered by IP go over
  EDS; if any is registered by host name the service becomes STRICT_DNS with its endpoints in the cluster,
  as Higress makes such a ServiceEntry DNS-resolved.
* The `dns` and `static` registries of McpBridge, which name their endpoints in the McpBridge itself:
  `<name>.dns` is a STRICT_DNS cluster over the comma-listed domains, `<name>.static` a STATIC cluster over
  the comma-listed `ip:port` / `[v6]:port` addresses.

Ports whose protocol is GRPC, GRPCS or HTTP2 speak HTTP/2 upstream; HTTPS and GRPCS originate TLS without
verification (Higress: DestinationRule TLS SIMPLE), with `sni` (McpBridge) or, for a `dns` registry of one
domain, that domain as SNI.

Unlike Higress, which drops a whole `dns`/`static` registry over one bad entry, a bad entry is reported on
the McpBridge's status and the registry's other entries still apply.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

import msgspec

from xdsbus.contract.hostnames import higress_hostname
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.mcpbridge_registries import BUILDER_TYPES, WATCHED_TYPES, bridge_registries, type_problem
from xdsbus.model.registry import RegistryService
from xdsbus.model.services import Endpoint, Resolution, ServiceModel, ServicePort

# Endpoints as the translator keeps them per registry service.
RegistryEndpoints = tuple[Endpoint, ...]

# Protocols a registry service may declare; the watchers normalize instance metadata to these.
PROTOCOLS = frozenset({"HTTP", "HTTP2", "GRPC", "HTTPS", "GRPCS"})
DEFAULT_PROTOCOL = "HTTP"
# Envoy refuses a locality whose endpoint weights add up to more than 2^32-1; registries weigh in the
# hundreds at most (Nacos: 0-10000 as a float, rounded by the watcher).
MAX_WEIGHT = 10_000
# RFC 1123 host names, as Envoy's STRICT_DNS resolves them (Higress' domainRegex for `dns` registries).
_LABEL = r"[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"(?=.{{1,253}}$)({_LABEL}\.)*{_LABEL}")
_UNPRINTABLE = re.compile(r"[\s\x00-\x1f\x7f]")


class RegistryServiceError(ValueError):
    """A registry service that cannot be translated; the message says why."""


class RegistryTranslation(msgspec.Struct, frozen=True):
    """A RegistryService event as the translator serves it.

    `endpoints` are the EDS endpoints (sorted by zone, address, port); empty when the model carries its
    endpoints itself (STRICT_DNS). `warnings` name the instances left out and why."""

    model: ServiceModel
    endpoints: RegistryEndpoints
    warnings: list[str]


class BridgeTranslation(msgspec.Struct, frozen=True):
    """The services an McpBridge defines itself (`dns`, `static`) and what was wrong with the rest."""

    services: list[ServiceModel]
    warnings: list[str]


def _protocol(text: str, warnings: list[str]) -> str:
    protocol = (text or DEFAULT_PROTOCOL).upper()
    if protocol in PROTOCOLS:
        return protocol
    warnings.append(f"protocol {text!r} is not supported (HTTP, HTTP2, GRPC, HTTPS, GRPCS); served as HTTP")
    return DEFAULT_PROTOCOL


def _check_port(port: int, what: str) -> None:
    if not 0 < port < 65536:
        raise RegistryServiceError(f"{what} {port} is not a port number (1-65535)")


def _ip(text: str) -> str | None:
    """The canonical text of an IP address, or None when `text` is not one."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def _sorted_unique(endpoints: list[Endpoint]) -> tuple[Endpoint, ...]:
    """Endpoints in the order a ClusterLoadAssignment groups them (zone, address, port), an address and
    port listed twice kept once (its first listing)."""
    seen: dict[tuple[str, int], Endpoint] = {}
    for ep in endpoints:
        seen.setdefault((ep.address, ep.port), ep)
    return tuple(sorted(seen.values(), key=lambda ep: (ep.zone, ep.address, ep.port)))


def registry_service(key: str, body: Any) -> RegistryTranslation:
    """Translate one RegistryService event body published under `key` (its hostname)."""
    try:
        svc = msgspec.convert(body, RegistryService, strict=False)
    except msgspec.ValidationError as exc:
        raise RegistryServiceError(str(exc)) from exc
    if svc.hostname != key:
        raise RegistryServiceError(f"hostname {svc.hostname!r} is not the event key {key!r}")
    if not key or _UNPRINTABLE.search(key):
        raise RegistryServiceError(f"hostname {key!r} is empty or holds spaces or control characters")
    _check_port(svc.port, "port")
    warnings: list[str] = []
    protocol = _protocol(svc.protocol, warnings)
    endpoints: list[Endpoint] = []
    by_name = False
    for instance in svc.endpoints:
        if not instance.healthy:
            continue
        where = f"instance {instance.address}:{instance.port}"
        if not 0 < instance.port < 65536:
            warnings.append(f"{where}: port is not a port number (1-65535); left out")
            continue
        address = _ip(instance.address)
        if address is None:
            if not _DNS_NAME.fullmatch(instance.address):
                warnings.append(f"{where}: address is neither an IP address nor a host name; left out")
                continue
            address = instance.address.lower()
            by_name = True
        weight = min(max(instance.weight, 1), MAX_WEIGHT)
        endpoints.append(Endpoint(address=address, port=instance.port, weight=weight, zone=instance.zone))
    ordered = _sorted_unique(endpoints)
    port = ServicePort(number=svc.port, protocol=protocol)
    if by_name:
        model = ServiceModel(hostname=key, ports=(port,), resolution=Resolution.STRICT_DNS, endpoints=ordered)
        return RegistryTranslation(model=model, endpoints=(), warnings=warnings)
    return RegistryTranslation(
        model=ServiceModel(hostname=key, ports=(port,)), endpoints=ordered, warnings=warnings
    )


def _static_endpoint(entry: str, port: int) -> Endpoint:
    """`ip:port` or `[v6]:port`."""
    if entry.startswith("["):
        host, sep, port_text = entry[1:].partition("]:")
        if not sep or ":" not in host:
            raise ValueError("is not '[<IPv6>]:<port>'")
    else:
        host, sep, port_text = entry.rpartition(":")
        if not sep or ":" in host:
            raise ValueError("is not '<IPv4>:<port>' or '[<IPv6>]:<port>'")
    address = _ip(host)
    if address is None:
        raise ValueError(f"address {host!r} is not an IP address")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"port {port_text!r} is not a port number (1-65535)")
    return Endpoint(address=address, port=int(port_text))


def _dns_endpoint(entry: str, port: int) -> Endpoint:
    if not _DNS_NAME.fullmatch(entry):
        raise ValueError("is not a domain name")
    return Endpoint(address=entry.lower(), port=port)


def _bridge_service(config: RegistryConfig, warnings: list[str], where: str) -> ServiceModel:
    """The service of one `dns` or `static` registry; problems with single entries go to `warnings`."""
    if not config.name:
        raise RegistryServiceError(f"needs a name: the service is <name>.{config.type}")
    _check_port(config.port, "port")
    problems: list[str] = []
    protocol = _protocol(config.protocol, problems)
    warnings.extend(f"{where}: {p}" for p in problems)
    parse = _static_endpoint if config.type == "static" else _dns_endpoint
    entries = [e.strip() for e in config.domain.split(",") if e.strip()]
    endpoints: list[Endpoint] = []
    for entry in entries:
        try:
            endpoints.append(parse(entry, config.port))
        except ValueError as exc:
            warnings.append(f"{where}: domain entry {entry!r} {exc}; ignored")
    if not endpoints:
        raise RegistryServiceError(f"domain {config.domain!r} lists no usable endpoint")
    sni = config.sni
    if not sni and config.type == "dns" and len(endpoints) == 1:
        sni = endpoints[0].address  # Higress: a dns registry of one domain uses it as SNI
    return ServiceModel(
        hostname=higress_hostname(config.name, config.type),
        ports=(ServicePort(number=config.port, protocol=protocol),),
        resolution=Resolution.STATIC if config.type == "static" else Resolution.STRICT_DNS,
        endpoints=_sorted_unique(endpoints),
        sni=sni,
    )


_NO_PROXIES = (
    "is not supported by xdsbus: registry services are reached directly, not through an upstream HTTP proxy"
)


def _proxy_warnings(body: Any) -> list[str]:
    """McpBridge `spec.proxies` and each registry's `proxyName` (Higress registry/proxy/factory.go: a
    loopback listener per proxy whose tcp_proxy tunnels to it with CONNECT, the registry's clusters sent
    there) are not implemented: say so on the McpBridge rather than connect directly without a word."""
    spec = body.get("spec") if isinstance(body, Mapping) else None
    if not isinstance(spec, Mapping):
        return []
    out: list[str] = []
    proxies = spec.get("proxies")
    if proxies:
        names = (
            [p.get("name") for p in proxies if isinstance(p, Mapping)] if isinstance(proxies, list) else []
        )
        named = f" ({', '.join(str(n) for n in names if n)})" if any(names) else ""
        out.append(f"spec.proxies{named} {_NO_PROXIES}")
    registries = spec.get("registries")
    for i, entry in enumerate(registries if isinstance(registries, list) else []):
        if isinstance(entry, Mapping) and entry.get("proxyName"):
            out.append(
                f"registries[{i}] ({entry.get('type')}/{entry.get('name', '')}): proxyName "
                f"{entry['proxyName']!r} {_NO_PROXIES}"
            )
    return out


def bridge_services(body: Any) -> BridgeTranslation:
    """The `dns` and `static` services of an McpBridge event body, and warnings naming each registry
    entry that is wrong (malformed, unknown type, bad address or port). Registries of the watched types
    (Nacos, Consul, Eureka) are only checked for what they need to run."""
    parsed = bridge_registries(body)
    warnings = list(parsed.problems) + _proxy_warnings(body)
    services: dict[str, ServiceModel] = {}
    for key, config in parsed.configs.items():
        where = f"registries[{parsed.index[key]}] ({key})"
        problem = type_problem(config.type)
        if problem is not None:
            warnings.append(f"{where}: {problem}")
            continue
        if config.type in WATCHED_TYPES:
            if not (config.domain or config.nacos_address_server) or not 0 < config.port < 65536:
                warnings.append(f"{where}: needs a domain and a port (1-65535) to reach the registry")
            continue
        assert config.type in BUILDER_TYPES
        try:
            model = _bridge_service(config, warnings, where)
        except RegistryServiceError as exc:
            warnings.append(f"{where}: {exc}; ignored")
            continue
        if model.hostname in services:
            warnings.append(f"{where}: hostname {model.hostname} is already defined; ignored")
            continue
        services[model.hostname] = model
    return BridgeTranslation(services=[services[h] for h in sorted(services)], warnings=warnings)
