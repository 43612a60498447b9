"""Helpers for the Ingress end-to-end tests: flexible Ingress manifests, echo services with several pods
(plain or HTTPS) and chosen endpoint conditions, traffic counting through Envoy, and the statuses the
builder publishes for each object.

They wrap `xdsbus_dev.harness.stack.Stack` without changing it: a module starts one Stack, writes every
manifest it needs at once and waits until each host answers as expected.
"""

from __future__ import annotations

import asyncio
import collections
import json
import ssl
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xdsbus import status_store
from xdsbus.contract.status import ObjectStatus
from xdsbus_dev.echo import EchoIdentity, EchoServer
from xdsbus_dev.harness import http
from xdsbus_dev.harness.processes import tool
from xdsbus_dev.harness.stack import CREATED, NAMESPACE, Stack, StackError, service_manifest

# -- manifests --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngressPath:
    """One `http.paths[]` entry: `port` is a number or a port name."""

    path: str
    service: str
    path_type: str = "Prefix"
    port: int | str = 80

    def manifest(self) -> dict[str, Any]:
        return {"path": self.path, "pathType": self.path_type, "backend": backend(self.service, self.port)}


def backend(service: str, port: int | str = 80) -> dict[str, Any]:
    """An Ingress backend naming a Service port by number or by name."""
    ref = {"number": port} if isinstance(port, int) else {"name": port}
    return {"service": {"name": service, "port": ref}}


def ingress(
    name: str,
    rules: Mapping[str, Sequence[IngressPath]],
    *,
    annotations: Mapping[str, str] | None = None,
    default_backend: str | None = None,
    created: str = CREATED,
) -> dict[str, Any]:
    """An Ingress of class higress: `rules` maps each host (`""` for none) to its paths."""
    spec: dict[str, Any] = {
        "ingressClassName": "higress",
        "rules": [
            {"host": host, "http": {"paths": [p.manifest() for p in paths]}} if host else
            {"http": {"paths": [p.manifest() for p in paths]}}
            for host, paths in rules.items()
        ],
    }  # fmt: skip
    if default_backend is not None:
        spec["defaultBackend"] = backend(default_backend)
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "creationTimestamp": created,
            "annotations": dict(annotations or {}),
        },
        "spec": spec,
    }


def simple(
    name: str, host: str, service: str, *, created: str = CREATED, **annotations: str
) -> dict[str, Any]:
    """An Ingress sending every path of `host` to `service`, with `annotations` (full keys)."""
    return ingress(name, {host: [IngressPath("/", service)]}, annotations=annotations, created=created)


def pod_slice(
    service: str,
    port: int,
    suffix: str,
    *,
    ready: bool | None = True,
    serving: bool | None = None,
    terminating: bool | None = None,
) -> dict[str, Any]:
    """An EndpointSlice with one endpoint (127.0.0.1:`port`, port name `http`) and these conditions."""
    conditions = {
        k: v
        for k, v in (("ready", ready), ("serving", serving), ("terminating", terminating))
        if v is not None
    }
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"{service}-{suffix}",
            "namespace": NAMESPACE,
            "labels": {"kubernetes.io/service-name": service},
        },
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": conditions}],
        "ports": [{"name": "http", "port": port}],
    }


@dataclass
class EchoService:
    """A Service whose pods are echo backends, each in its own EndpointSlice (they differ by port)."""

    name: str
    pods: list[EchoServer]
    # Per pod, its endpoint conditions (ready, serving, terminating).
    conditions: list[tuple[bool | None, bool | None, bool | None]] = field(default_factory=list)

    def manifests(self) -> list[dict[str, Any]]:
        out = [service_manifest(self.name, self.pods[0].port)]
        for index, pod in enumerate(self.pods):
            ready, serving, terminating = self.conditions[index]
            out.append(
                pod_slice(
                    self.name, pod.port, str(index + 1), ready=ready, serving=serving, terminating=terminating
                )
            )
        return out

    def pod_names(self) -> list[str]:
        return [pod.identity.pod for pod in self.pods]


async def add_service(
    stack: Stack,
    name: str,
    pods: int = 1,
    *,
    tls: ssl.SSLContext | None = None,
    conditions: Sequence[tuple[bool | None, bool | None, bool | None]] = (),
) -> EchoService:
    """Start `pods` echo backends for Service `name` (HTTPS with `tls`); write nothing yet.

    Pods are named `<name>-7c9d5f-<n>` like Stack's; the Stack stops them with the others.
    """
    servers = []
    for n in range(1, pods + 1):
        if tls is None:
            servers.append(await stack.add_pod(name))
            continue
        pod = f"{name}-7c9d5f-{n}"
        echo = await EchoServer(EchoIdentity(pod=pod, namespace=NAMESPACE, service=name), tls=tls).start()
        stack.echoes[pod] = echo
        servers.append(echo)
    return EchoService(name, servers, list(conditions) or [(True, None, None)] * pods)


# -- traffic ----------------------------------------------------------------------------------------


async def request(
    stack: Stack,
    host: str,
    target: str = "/",
    *,
    method: str = "GET",
    headers: Mapping[str, str] | Sequence[tuple[str, str]] | None = None,
    timeout: float = 10.0,
) -> http.Response:
    """One request through Envoy's plain-HTTP listener."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers or [])
    return await http.request(
        method, "127.0.0.1", stack.gateway_port, target, host_header=host, headers=pairs, timeout=timeout
    )


async def count_pods(
    stack: Stack, host: str, target: str, n: int, headers: Mapping[str, str] | None = None
) -> collections.Counter[str]:
    """Which pod answered each of `n` requests (one keep-alive connection); a non-200 answer fails."""
    counts: collections.Counter[str] = collections.Counter()
    async with http.Connection("127.0.0.1", stack.gateway_port) as conn:
        for _ in range(n):
            response = await conn.request("GET", target, host=host, headers=dict(headers or {}))
            assert response.status == 200, (host, target, response.status, response.text[:300])
            counts[response.json()["pod"]] += 1
    return counts


@dataclass(frozen=True)
class Expect:
    """A request that must get `status` (and, for 200, be answered by a pod starting with `pod`)."""

    host: str
    target: str = "/"
    status: int = 200
    pod: str = ""
    headers: tuple[tuple[str, str], ...] = ()


async def wait_all(stack: Stack, expectations: Iterable[Expect], timeout: float = 30.0) -> None:
    """Until every expectation holds at once: the configuration written has reached Envoy."""
    wanted = list(expectations)
    last: dict[Expect, str] = {}

    async def probe() -> bool:
        ok = True
        for e in wanted:
            response = await request(stack, e.host, e.target, headers=e.headers)
            pod = response.json().get("pod", "") if response.status == 200 and response.body else ""
            if response.status != e.status or not str(pod).startswith(e.pod):
                last[e] = f"{response.status} {pod}"
                ok = False
            else:
                last.pop(e, None)
        return ok

    try:
        await stack.wait(probe, timeout=timeout, what="every host configured")
    except StackError as exc:
        raise StackError(f"still failing: {last}\n{exc}") from None


# -- statuses ---------------------------------------------------------------------------------------


async def ingress_statuses(stack: Stack) -> dict[str, ObjectStatus]:
    """The builder's status of every Ingress in namespace demo, from KV xdsbus_status, by name."""
    async with stack.bus() as bus:
        statuses = await status_store.read_all(bus)
    prefix = f"{NAMESPACE}/"
    return {
        s.key.removeprefix(prefix): s for s in statuses if s.kind == "Ingress" and s.key.startswith(prefix)
    }


async def ingress_status(stack: Stack, name: str) -> ObjectStatus | None:
    """The builder's status of Ingress `demo/<name>`, or None."""
    return (await ingress_statuses(stack)).get(name)


async def wait_statuses(stack: Stack, names: Iterable[str], timeout: float = 15.0) -> dict[str, ObjectStatus]:
    """Until every Ingress in `names` has a status; all the Ingress statuses then."""
    wanted = set(names)

    async def probe() -> dict[str, ObjectStatus] | None:
        statuses = await ingress_statuses(stack)
        return statuses if wanted <= statuses.keys() else None

    return dict(await stack.wait(probe, timeout=timeout, what=f"statuses of {sorted(wanted)}"))


async def wait_warning(stack: Stack, name: str, *fragments: str, timeout: float = 15.0) -> list[str]:
    """Until Ingress `name`'s status has a warning containing every fragment; its warnings."""

    async def probe() -> list[str] | None:
        status = await ingress_status(stack, name)
        if status is None:
            return None
        hit = any(all(f in w for f in fragments) for w in status.warnings)
        return list(status.warnings) if hit else None

    return list(await stack.wait(probe, timeout=timeout, what=f"warning {fragments} on Ingress {name}"))


async def cli_status(stack: Stack, obj: str) -> list[dict[str, Any]]:
    """`xdsbus status --json OBJ`, as a user runs it."""
    proc = await asyncio.create_subprocess_exec(
        tool("xdsbus"),
        "status",
        "--nats-url",
        stack.nats.url,
        "--json",
        obj,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, (proc.returncode, err.decode())
    return list(json.loads(out))
