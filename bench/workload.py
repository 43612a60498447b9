"""The benchmark workload: Kubernetes Services, EndpointSlices and Ingresses as a watcher publishes them.

Shapes follow tests/support/objects.py. Every name is zero-padded so that string order equals numeric
order, and every address of a slice sorts in the order it is generated: the upb baselines can then emit
resources in the translator's (sorted) order without sorting anything themselves.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import Any

from xdsbus.events import Event, Op, encode, subject_for
from xdsbus.fold.state import FoldState, apply

SOURCE = "k8s/bench"
NAMESPACE = "default"
CREATED = "2026-01-01T00:00:00Z"
SERVICE_PORT = 80
TARGET_PORT = 8080
PORT_NAME = "http"
INGRESS_PATH = "/api"


def service_name(i: int) -> str:
    return f"svc-{i:05d}"


def slice_name(i: int) -> str:
    return f"{service_name(i)}-abcde"


def ingress_name(i: int) -> str:
    return f"ing-{i:05d}"


def ingress_host(i: int) -> str:
    return f"{service_name(i)}.example.com"


def hostname(i: int) -> str:
    return f"{service_name(i)}.{NAMESPACE}.svc.cluster.local"


def cluster(i: int) -> str:
    """The Istio/Higress cluster name of service i's port."""
    return f"outbound|{SERVICE_PORT}||{hostname(i)}"


def address(i: int, j: int, generation: int = 0) -> str:
    """Address of endpoint j of service i; a new generation moves it to another address.

    The last octet runs 100..199 for j < 100: three digits, so the addresses of one generation sort in
    the order of j. The generation moves the third octet."""
    return f"10.{(i >> 8) % 256}.{(i % 256 + generation) % 256}.{100 + j}"


def addresses(i: int, count: int, generation: int = 0) -> list[str]:
    return [address(i, j, generation) for j in range(count)]


def service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": service_name(i), "namespace": NAMESPACE, "creationTimestamp": CREATED},
        "spec": {"ports": [{"name": PORT_NAME, "port": SERVICE_PORT, "targetPort": TARGET_PORT}]},
    }


def endpoint_slice(i: int, addrs: list[str]) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(i),
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service_name(i)},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addrs],
        "ports": [{"name": PORT_NAME, "port": TARGET_PORT, "protocol": "TCP"}],
    }


def ingress(i: int) -> dict[str, Any]:
    """One host, one Prefix path, to service i."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": ingress_name(i), "namespace": NAMESPACE, "creationTimestamp": CREATED},
        "spec": {
            "rules": [
                {
                    "host": ingress_host(i),
                    "http": {
                        "paths": [
                            {
                                "path": INGRESS_PATH,
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": service_name(i), "port": {"number": SERVICE_PORT}}
                                },
                            }
                        ]
                    },
                }
            ]
        },
    }


def upsert(kind: str, name: str, body: dict[str, Any], rev: str) -> Event:
    """The envelope a watcher publishes for an upsert."""
    return Event(
        source=SOURCE,
        kind=kind,
        key=f"{NAMESPACE}/{name}",
        op=Op.UPSERT,
        rev=rev,
        at=time.time_ns(),
        body=body,
    )


def initial_events(services: int, endpoints: int, ingresses: int) -> Iterator[Event]:
    """Every Service with its slice, then the Ingresses (each to service i % services)."""
    for i in range(services):
        yield upsert("Service", service_name(i), service(i), "1")
        yield upsert("EndpointSlice", slice_name(i), endpoint_slice(i, addresses(i, endpoints)), "1")
    for i in range(ingresses):
        yield upsert("Ingress", ingress_name(i), ingress(i % services), "1")


def folded_state(services: int, endpoints: int, ingresses: int) -> FoldState:
    """The initial objects folded into a state, as the builder's fold leaves them."""
    state = FoldState()
    for seq, event in enumerate(initial_events(services, endpoints, ingresses), start=1):
        apply(state, seq, event)
    return state


class EndpointChurn:
    """Endpoint changes: each moves one endpoint of one slice to a new address (a pod replaced)."""

    def __init__(self, services: int, endpoints: int, seed: int = 1) -> None:
        self.services = services
        self.endpoints = endpoints
        self.rng = random.Random(seed)
        # Per service, the generation of each endpoint's address.
        self.generations: dict[int, list[int]] = {}
        self.revs: dict[int, int] = {}
        self.addresses: dict[int, list[str]] = {}

    def next(self) -> Event:
        i = self.rng.randrange(self.services)
        j = self.rng.randrange(self.endpoints)
        gens = self.generations.setdefault(i, [0] * self.endpoints)
        addrs = self.addresses.get(i) or addresses(i, self.endpoints)
        gens[j] += 1
        addrs[j] = address(i, j, gens[j])
        self.addresses[i] = addrs
        rev = self.revs[i] = self.revs.get(i, 1) + 1
        return upsert("EndpointSlice", slice_name(i), endpoint_slice(i, addrs), str(rev))


def wire(event: Event) -> tuple[str, bytes]:
    """Subject and payload of an event, as the watcher publishes it."""
    return subject_for(event.source, event.kind), encode(event)
