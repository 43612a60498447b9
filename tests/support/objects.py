"""Kubernetes-style objects for tests, as watchers publish them."""

from __future__ import annotations

from typing import Any


def service(
    name: str, namespace: str = "default", ports: tuple[int, ...] = (80,), created: str = ""
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created or "2026-01-01T00:00:00Z",
        },
        "spec": {"ports": [{"name": f"http-{p}", "port": p, "targetPort": 8000 + p % 1000} for p in ports]},
    }


def endpoint_slice(
    service_name: str, addresses: list[str], namespace: str = "default", port: int = 80, suffix: str = "1"
) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service_name}-{suffix}",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": service_name},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses],
        "ports": [{"name": f"http-{port}", "port": 8000 + port % 1000}],
    }


def ingress(
    name: str,
    host: str,
    backend: str,
    path: str = "/",
    namespace: str = "default",
    port: int = 80,
    created: str = "",
) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": created or "2026-01-01T00:00:00Z",
        },
        "spec": {
            "ingressClassName": "higress",
            "rules": [
                {
                    "host": host,
                    "http": {
                        "paths": [
                            {
                                "path": path,
                                "pathType": "Prefix",
                                "backend": {"service": {"name": backend, "port": {"number": port}}},
                            }
                        ]
                    },
                }
            ],
        },
    }
