"""The suite's manifests made runnable without Kubernetes: pure transformations of object lists.

- `{GATEWAY_CLASS_NAME}` becomes the class under test;
- Gateway listener ports (80, 443, 8080...) and HTTPRoute parentRef ports become free high ports, one
  per Gateway and port (the suite's ports are privileged; and each Gateway has its own address upstream);
- Deployments become pod specs the runner starts echo backends for (`<deployment>-7c9d5f-<n>`), and each
  Service selecting them gets one EndpointSlice per pod at 127.0.0.1:<that pod's echo port>;
- manual EndpointSlices (HTTPRouteServiceTypes) are filled with infra-backend-v1's pods, as the upstream
  test patches them at run time; IPv6 ones are dropped (no IPv6 echo);
- kinds no Gateway API HTTP runner needs (Deployment itself, TCP/UDP/TLSRoute, BackendTLSPolicy,
  ListenerSet) are left out.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CLASS_PLACEHOLDER = "{GATEWAY_CLASS_NAME}"
POD_HASH = "7c9d5f"
SKIPPED_KINDS = frozenset(
    {"Deployment", "TCPRoute", "UDPRoute", "TLSRoute", "BackendTLSPolicy", "ListenerSet"}
)
CREATED = "2026-01-01T00:00:00Z"


def load(path: Path, class_name: str) -> list[dict[str, Any]]:
    """The objects of one manifest file, with the class placeholder replaced."""
    text = path.read_text().replace(CLASS_PLACEHOLDER, class_name)
    return [doc for doc in yaml.safe_load_all(text) if doc]


GatewayPort = tuple[str, str, int]  # (namespace, Gateway name, port the suite declares)


def gateway_ports(objects: Iterable[Mapping[str, Any]]) -> set[GatewayPort]:
    """Every (namespace, name, port) a Gateway among `objects` listens on."""
    return {
        (obj["metadata"].get("namespace", "default"), obj["metadata"]["name"], int(listener["port"]))
        for obj in objects
        if obj.get("kind") == "Gateway"
        for listener in obj.get("spec", {}).get("listeners", [])
    }


def remap_ports(
    objects: Iterable[dict[str, Any]], port_map: Mapping[GatewayPort, int]
) -> list[dict[str, Any]]:
    """Copies with Gateway listener ports and route parentRef ports mapped, per Gateway: upstream each
    Gateway has an address of its own, so two Gateways on port 80 must stay apart here too. Filter ports
    (redirects) are kept: they are what the client is told, not where anything listens."""
    out = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        spec = obj.get("spec") or {}
        namespace = obj.get("metadata", {}).get("namespace", "default")
        if obj.get("kind") == "Gateway":
            name = obj["metadata"]["name"]
            for listener in spec.get("listeners", []):
                port = int(listener["port"])
                listener["port"] = port_map.get((namespace, name, port), port)
        elif obj.get("kind") in ("HTTPRoute", "GRPCRoute"):
            for ref in spec.get("parentRefs", []):
                if "port" in ref:
                    key = (ref.get("namespace", namespace), ref["name"], int(ref["port"]))
                    ref["port"] = port_map.get(key, int(ref["port"]))
        out.append(obj)
    return out


@dataclass(frozen=True)
class PodSpec:
    """A pod the runner emulates with an echo backend."""

    name: str
    namespace: str
    deployment: str
    labels: Mapping[str, str] = field(default_factory=dict)


def pods_of(objects: Iterable[Mapping[str, Any]]) -> list[PodSpec]:
    """The pods the Deployments among `objects` would run."""
    pods = []
    for obj in objects:
        if obj.get("kind") != "Deployment":
            continue
        meta = obj["metadata"]
        spec = obj.get("spec") or {}
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        replicas = spec.get("replicas")
        for n in range(1, (1 if replicas is None else int(replicas)) + 1):
            pods.append(
                PodSpec(
                    name=f"{meta['name']}-{POD_HASH}-{n}",
                    namespace=meta.get("namespace", "default"),
                    deployment=meta["name"],
                    labels=dict(labels),
                )
            )
    return pods


def _selects(selector: Mapping[str, str] | None, pod: PodSpec) -> bool:
    return bool(selector) and all(pod.labels.get(k) == v for k, v in (selector or {}).items())


def _slice(name: str, namespace: str, service: str, ports: list[dict[str, Any]], port: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service},
            "creationTimestamp": CREATED,
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": True}}],
        # Every port of the pod is the same echo server: it serves HTTP/1.1 and h2c on one port.
        "ports": [
            {
                "name": p.get("name", ""),
                "port": port,
                "protocol": p.get("protocol", "TCP"),
                **({"appProtocol": p["appProtocol"]} if "appProtocol" in p else {}),
            }
            for p in ports
        ],
    }


def runnable(
    objects: Iterable[dict[str, Any]],
    pods: Iterable[PodSpec],
    echo_port: Callable[[PodSpec], int],
    *,
    manual_slice_pods: Iterable[PodSpec] = (),
) -> list[dict[str, Any]]:
    """What the runner writes for `objects`: the kinds it keeps, plus generated EndpointSlices.
    `pods` are every pod running (base and test), `manual_slice_pods` fill manual EndpointSlices."""
    pods = list(pods)
    manual = list(manual_slice_pods)
    out: list[dict[str, Any]] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind in SKIPPED_KINDS:
            continue
        meta = obj.setdefault("metadata", {})
        meta.setdefault("creationTimestamp", CREATED)
        if kind == "EndpointSlice":
            if obj.get("addressType") != "IPv4":
                continue
            service = (meta.get("labels") or {}).get("kubernetes.io/service-name", "")
            for n, pod in enumerate(manual, 1):
                out.append(
                    _slice(
                        f"{meta['name']}-{n}",
                        meta.get("namespace", "default"),
                        service,
                        obj.get("ports") or [],
                        echo_port(pod),
                    )
                )
            continue
        out.append(obj)
        if kind == "Service":
            spec = obj.get("spec") or {}
            namespace = meta.get("namespace", "default")
            ports = [p for p in spec.get("ports", []) if p.get("protocol", "TCP") == "TCP"]
            for pod in pods:
                if pod.namespace == namespace and ports and _selects(spec.get("selector"), pod):
                    out.append(
                        _slice(f"{meta['name']}-{pod.name}", namespace, meta["name"], ports, echo_port(pod))
                    )
    return out


def gateway_class(name: str, controller: str) -> dict[str, Any]:
    """The GatewayClass the suite is run against (the suite takes it as a flag; it is in no manifest)."""
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name, "creationTimestamp": CREATED},
        "spec": {"controllerName": controller},
    }
