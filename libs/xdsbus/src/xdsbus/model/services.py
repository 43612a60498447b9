"""The internal service model every source translates into: services, ports and endpoints."""

from __future__ import annotations

import enum
import sys

import msgspec

# The structs below are frozen and hold only strings, numbers and tuples of each other: they cannot form
# a cycle, so the cyclic collector need not track them (gc=False); a builder holds one model per service
# hostname and a full build makes one Endpoint per endpoint.


class Resolution(enum.StrEnum):
    EDS = "EDS"
    STRICT_DNS = "STRICT_DNS"
    STATIC = "STATIC"


class Health(enum.StrEnum):
    HEALTHY = "HEALTHY"
    UNHEALTHY = "UNHEALTHY"
    DRAINING = "DRAINING"


class ServicePort(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A port a service exposes; `target` is the endpoint port (a number, or a name to resolve)."""

    number: int
    name: str = ""
    protocol: str = "HTTP"
    target: int | str | None = None


class Endpoint(msgspec.Struct, frozen=True, kw_only=True, order=True, gc=False):
    """One backend address serving one service port."""

    address: str
    port: int
    health: Health = Health.HEALTHY
    weight: int = 1
    zone: str = ""


class ServiceModel(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A routable service under one hostname (`name.ns.svc.cluster.local`, `svc.dc.consul`, ...)."""

    hostname: str
    ports: tuple[ServicePort, ...]
    resolution: Resolution = Resolution.EDS
    # For STRICT_DNS services: the DNS name to resolve (ExternalName).
    dns_name: str = ""
    # Endpoints carried in the cluster itself (its load_assignment) rather than over EDS: the addresses of
    # a STATIC service (`static` registries), or the names a STRICT_DNS service resolves (`dns`
    # registries, registry instances registered by host name); they take precedence over `dns_name`.
    # Sorted by (zone, address, port). Empty for EDS services, whose endpoints change far more often.
    endpoints: tuple[Endpoint, ...] = ()
    # SNI for ports whose protocol is HTTPS or GRPCS (Envoy originates TLS to the endpoints).
    sni: str = ""


def cluster_name(port: int, hostname: str) -> str:
    """Istio/Higress naming: `outbound|<port>||<host>`."""
    return f"outbound|{port}||{hostname}"


def subset_cluster_name(port: int, subset: str, hostname: str) -> str:
    """Istio/Higress naming for a variant of a service's cluster: `outbound|<port>|<subset>|<host>`."""
    return f"outbound|{port}|{subset}|{hostname}"


def k8s_hostname(name: str, namespace: str) -> str:
    """The cluster-local hostname of a Kubernetes Service (interned)."""
    # Interned: the Service's model, its slices and the Ingresses naming it each made one, and the
    # indexes kept all three (~35 bytes per endpoint at 100k, bench builder_memory). An interned string
    # is dropped from the table with its last reference.
    return sys.intern(f"{name}.{namespace}.svc.cluster.local")
