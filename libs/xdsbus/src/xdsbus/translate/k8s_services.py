"""Kubernetes Services, EndpointSlices and Endpoints into the service model."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from operator import attrgetter
from typing import TypeVar

import msgspec

from xdsbus.model.k8s import EndpointConditions, K8sEndpoints, K8sEndpointSlice, K8sService, ServicePortSpec
from xdsbus.model.services import Endpoint, Health, Resolution, ServiceModel, ServicePort, k8s_hostname

SERVICE_NAME_LABEL = "kubernetes.io/service-name"

_GRPC_PROTOCOLS = {"grpc", "grpc-web"}
_HTTP2_PROTOCOLS = {"http2", "h2c", "kubernetes.io/h2c"}

# Endpoints are sorted by zone first: a ClusterLoadAssignment groups them by zone.
_ENDPOINT_ORDER = attrgetter("zone", "address", "port")

_HEALTH_RANK = {Health.HEALTHY: 0, Health.DRAINING: 1, Health.UNHEALTHY: 2}


class ServiceError(ValueError):
    """A Service that cannot be translated; the message names the reason."""


def _protocol(port: ServicePortSpec) -> str:
    hint = (port.app_protocol or port.name.split("-", 1)[0]).lower()
    if port.protocol.upper() == "UDP":
        return "UDP"
    if hint in _GRPC_PROTOCOLS:
        return "GRPC"
    if hint in _HTTP2_PROTOCOLS:
        return "HTTP2"
    return "HTTP"


def service_model(svc: K8sService, shared_ports: ServicePorts | None = None) -> ServiceModel:
    """The model of a Service: one port per spec port; ExternalName services resolve through DNS.
    `shared_ports` (kept by the caller) makes Services with equal ports hold one tuple of them: port
    lists repeat across Services (80 -> 8080 "http"), and a tuple and a struct per Service were ~19
    bytes per endpoint at 100k (bench builder_memory)."""
    meta = svc.metadata
    ports: list[ServicePort] = []
    seen: set[int] = set()
    for port in svc.spec.ports:
        if not 0 < port.port < 65536:
            raise ServiceError(f"port {port.port} is out of range")
        if port.port in seen:
            raise ServiceError(f"port {port.port} is declared twice")
        seen.add(port.port)
        ports.append(
            ServicePort(number=port.port, name=port.name, protocol=_protocol(port), target=port.target_port)
        )
    ports.sort(key=lambda p: p.number)
    shared = _shared(tuple(ports), shared_ports)
    if svc.spec.type == "ExternalName":
        if not svc.spec.external_name:
            raise ServiceError("type ExternalName without spec.externalName")
        return ServiceModel(
            hostname=k8s_hostname(meta.name, meta.namespace),
            ports=shared,
            resolution=Resolution.STRICT_DNS,
            dns_name=svc.spec.external_name,
        )
    return ServiceModel(hostname=k8s_hostname(meta.name, meta.namespace), ports=shared)


def slice_service_name(slice_: K8sEndpointSlice) -> str:
    """The Service an EndpointSlice belongs to (its kubernetes.io/service-name label)."""
    return slice_.metadata.labels.get(SERVICE_NAME_LABEL, "")


class SliceEndpoints(msgspec.Struct, frozen=True, gc=False):
    """What translation reads of an EndpointSlice, kept per slice instead of the decoded object: its
    named ports and its serving addresses, flat. At 100k endpoints the decoded slices' per endpoint
    structs and lists were a third of the translator's memory and of the objects the cyclic collector
    walks (bench builder_memory); strings and tuples of them hold no cycle, hence gc=False."""

    # The hostname of the Service the slice belongs to (here rather than in a dict of its own).
    host: str
    # (name, number) of each port with a number, in the slice's order (often shared: `slice_endpoints`).
    ports: tuple[tuple[str, int], ...]
    # Each serving address in the slice's order (none unless the slice is IPv4 or IPv6), joined by
    # _SEP into one string (`address_list`), or a tuple when joining would lose one (see `_packed`);
    # and its health and zone at the same index, None when every one is HEALTHY, or in no zone (the
    # common case). One string for five addresses is ~110 bytes, a tuple of them ~400.
    addresses: str | tuple[str, ...]
    health: tuple[Health, ...] | None = None
    zones: tuple[str, ...] | None = None

    def address_list(self) -> Sequence[str]:
        """The serving addresses, in the slice's order."""
        addresses = self.addresses
        if isinstance(addresses, str):
            return addresses.split(_SEP) if addresses else ()
        return addresses

    def port(self, name: str) -> int | None:
        """The number of the slice's port named `name` (the first one), if any."""
        for port_name, number in self.ports:
            if port_name == name:
                return number
        return None


# A slice's ports: (name, number) of each port with a number.
Ports = tuple[tuple[str, int], ...]
SlicePorts = dict[Ports, Ports]

# What joins a slice's addresses (`SliceEndpoints.addresses`): never part of an IP address.
_SEP = " "


def _packed(addresses: list[str]) -> str | tuple[str, ...]:
    # Joined unless that would lose one: an address holding _SEP, or an empty one (a lone "" joins to
    # the empty string, which reads back as no address).
    if any(not address or _SEP in address for address in addresses):
        return tuple(addresses)
    return _SEP.join(addresses)


# Port lists `service_model` and `slice_endpoints` share, per cache; emptied past this many (a cache
# only saves memory).
SHARED_PORTS_MAX = 1024
ServicePorts = dict[tuple[ServicePort, ...], tuple[ServicePort, ...]]
K = TypeVar("K", bound=Hashable)


def _shared(value: K, cache: dict[K, K] | None) -> K:
    """`value`, or the equal one `cache` already holds (then `value` is dropped)."""
    if cache is None:
        return value
    held = cache.get(value)
    if held is None:
        if len(cache) >= SHARED_PORTS_MAX:
            cache.clear()
        held = cache[value] = value
    return held


def slice_endpoints(
    slice_: K8sEndpointSlice, host: str, shared_ports: SlicePorts | None = None
) -> SliceEndpoints:
    """The ports and serving addresses of a decoded EndpointSlice of the Service `host`. `shared_ports`
    (kept by the caller
    from one slice to the next) makes slices with equal ports hold one tuple: nearly every slice of a
    cluster has one of a few port lists, and a tuple of them per slice was ~25 bytes per endpoint at
    100k (bench builder_memory)."""
    if slice_.address_type not in ("IPv4", "IPv6"):
        return SliceEndpoints(host=host, ports=(), addresses=())
    ports = _shared(tuple((sp.name, sp.port) for sp in slice_.ports if sp.port is not None), shared_ports)
    addresses: list[str] = []
    # (index in `addresses`, health, zone) of the addresses not HEALTHY or in a zone: usually none.
    marked: list[tuple[int, Health, str]] = []
    for ep in slice_.endpoints:
        state = _slice_health(ep.conditions)
        if state is None:
            continue
        if state is Health.HEALTHY and not ep.zone:
            addresses += ep.addresses
            continue
        for address in ep.addresses:
            marked.append((len(addresses), state, ep.zone))
            addresses.append(address)
    if not marked:
        return SliceEndpoints(host=host, ports=ports, addresses=_packed(addresses))
    health = [Health.HEALTHY] * len(addresses)
    zones = [""] * len(addresses)
    for index, state, zone in marked:
        health[index], zones[index] = state, zone
    return SliceEndpoints(
        host=host,
        ports=ports,
        addresses=_packed(addresses),
        health=tuple(health) if any(h is not Health.HEALTHY for h in health) else None,
        zones=tuple(zones) if any(zones) else None,
    )


def _slice_health(conditions: EndpointConditions) -> Health | None:
    """Envoy health of a slice endpoint, or None to leave it out.

    A nil `ready` means unknown and must be read as ready (EndpointSlice API). A terminating endpoint
    that still serves goes out as DRAINING: Envoy sends it no new requests but lets sticky sessions
    finish. Anything else not ready is left out, as Istio does by default, so Envoy's panic threshold
    never routes to a pod that is not serving.
    """
    if conditions.ready is not False:
        return Health.HEALTHY
    if conditions.serving and conditions.terminating:
        return Health.DRAINING
    return None


def endpoints_from_slices(port: ServicePort, slices: Iterable[SliceEndpoints]) -> list[Endpoint]:
    """Serving endpoints of one service port, from the slices of its Service, sorted.

    An address listed twice (slices overlap while the controller moves endpoints between them) keeps
    its healthiest state."""
    best: dict[tuple[str, int], Endpoint] = {}
    for slice_ in slices:
        number = slice_.port(port.name)
        if number is None:
            continue
        addresses = slice_.address_list()
        health = slice_.health or (Health.HEALTHY,) * len(addresses)
        zones = slice_.zones or ("",) * len(addresses)
        for address, state, zone in zip(addresses, health, zones, strict=True):
            current = best.get((address, number))
            if current is None or _HEALTH_RANK[state] < _HEALTH_RANK[current.health]:
                best[(address, number)] = Endpoint(address=address, port=number, health=state, zone=zone)
    return sorted(best.values(), key=_ENDPOINT_ORDER)


def endpoints_from_v1(port: ServicePort, endpoints: K8sEndpoints) -> list[Endpoint]:
    """Ready endpoints of one service port from a v1 Endpoints object (manually managed endpoints)."""
    out: set[Endpoint] = set()
    for subset in endpoints.subsets:
        number = next((p.port for p in subset.ports if p.name == port.name), None)
        if number is None and len(subset.ports) == 1 and not port.name:
            number = subset.ports[0].port
        if number is None:
            continue
        for address in subset.addresses:
            out.add(Endpoint(address=address.ip, port=number))
    return sorted(out, key=_ENDPOINT_ORDER)
