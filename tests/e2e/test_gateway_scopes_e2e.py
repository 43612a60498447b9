"""Per-Gateway data planes end to end (docs/design.md §5): two Gateways, each with a `/` route, and two
real Envoys with node metadata XDSBUS_GATEWAY naming one each. Each Envoy gets only its Gateway's
listener and answers from its Gateway's backend; deleting a Gateway leaves its Envoy on the last version
and says so in `xdsbus status`.

The Gateways listen on two ports: two Envoys on one host cannot both bind one port and be told apart
(tests/translate/test_gateway_scopes.py has two Gateways on one port)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from xdsbus_dev.harness.envoy import Envoy
from xdsbus_dev.harness.processes import free_port, tool
from xdsbus_dev.harness.stack import CREATED, NAMESPACE, Stack, edge_installed

pytestmark = pytest.mark.slow

GROUP = "gateway.networking.k8s.io"


def _meta(name: str, namespace: str | None = NAMESPACE) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "creationTimestamp": CREATED, "generation": 1}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def gateway(name: str, port: int) -> dict[str, Any]:
    listener = {
        "name": "http",
        "port": port,
        "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": _meta(name),
        "spec": {"gatewayClassName": "higress", "listeners": [listener]},
    }


def slash_route(name: str, gateway_name: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": _meta(name),
        "spec": {
            "parentRefs": [{"name": gateway_name}],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": service, "port": 80}],
                }
            ],
        },
    }


def gateway_class() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GatewayClass",
        "metadata": _meta("higress", None),
        "spec": {"controllerName": "higress.io/gateway-controller"},
    }


async def scope_status(stack: Stack, scope: str) -> dict[str, Any] | None:
    """The `xdsbus status --json` row of a derived scope."""
    argv = [tool("xdsbus"), "status", "--nats-url", stack.nats.url, "--json", f"GatewayScope/{scope}"]
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    rows = [row for row in json.loads(out or b"[]") if row.get("key") == scope]
    return rows[0] if rows else None


async def test_each_gateway_has_its_own_envoy(tmp_path: Path) -> None:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    port_a, port_b = free_port(), free_port()
    async with Stack(tmp_path, edges=1, ingress=False, envoy=False) as stack:
        stack.write(
            "gateways.yaml",
            [
                gateway_class(),
                gateway("a", port_a),
                gateway("b", port_b),
                slash_route("route-a", "a", "echo-a"),
                slash_route("route-b", "b", "echo-b"),
            ],
        )
        edges = [edge.address for edge in stack.edges]
        tls = stack.pki.client()
        envoy_a = Envoy(tmp_path / "envoy-a", edges, gateway=f"{NAMESPACE}/a", tls=tls).start()
        envoy_b = Envoy(tmp_path / "envoy-b", edges, gateway=f"{NAMESPACE}/b", tls=tls).start()
        try:
            await envoy_a.wait_ready(listeners=[f"0.0.0.0_{port_a}"])
            await envoy_b.wait_ready(listeners=[f"0.0.0.0_{port_b}"])
            # Each Envoy holds its own Gateway's listener only, and answers `/` from its own backend.
            assert list(await envoy_a.listeners()) == [f"0.0.0.0_{port_a}"]
            assert list(await envoy_b.listeners()) == [f"0.0.0.0_{port_b}"]
            assert (
                (await envoy_a.get("/", port=port_a, host="any.example")).json()["pod"].startswith("echo-a-")
            )
            assert (
                (await envoy_b.get("/", port=port_b, host="any.example")).json()["pod"].startswith("echo-b-")
            )
            live = await scope_status(stack, f"gateway.{NAMESPACE}.b")
            assert live is not None and live["state"] == "accepted", live

            # Gateway b goes away: its scope keeps its last version (Envoy b still serves), and says why.
            stack.write(
                "gateways.yaml",
                [gateway_class(), gateway("a", port_a), slash_route("route-a", "a", "echo-a")],
            )

            async def retired() -> dict[str, Any] | None:
                row = await scope_status(stack, f"gateway.{NAMESPACE}.b")
                return row if row is not None and row["state"] == "rejected" else None

            row = await stack.wait(retired, timeout=20, what="scope gateway.demo.b retired")
            assert f"Gateway {NAMESPACE}/b (file/e2e) is gone" in row["reason"], row
            assert (
                (await envoy_b.get("/", port=port_b, host="any.example")).json()["pod"].startswith("echo-b-")
            )
            assert list(await envoy_b.listeners()) == [f"0.0.0.0_{port_b}"]
        finally:
            await envoy_a.stop()
            await envoy_b.stop()
