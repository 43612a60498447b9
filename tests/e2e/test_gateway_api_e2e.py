"""Gateway API end to end through a real Envoy: a GRPCRoute called by a real gRPC client, a Gateway and
an Ingress sharing a port, and an invalid HTTPRoute answering 500 and reported in `xdsbus status`."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import pytest

from tests.support.grpc_backend import SAY, GrpcBackend, call
from xdsbus_dev.harness.processes import tool
from xdsbus_dev.harness.stack import (
    CREATED,
    NAMESPACE,
    Stack,
    StackError,
    endpoint_slice_manifest,
    ingress_manifest,
)

pytestmark = pytest.mark.slow

CONTROLLER = "higress.io/gateway-controller"
GROUP = "gateway.networking.k8s.io"
GRPC_HOST = "grpc.example.com"
GW_HOST = "gw.example.com"
ING_HOST = "ing.example.com"


# -- manifests ------------------------------------------------------------------------------------


def meta(name: str, namespace: str | None = NAMESPACE) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "creationTimestamp": CREATED, "generation": 1}
    if namespace is not None:
        out["namespace"] = namespace
    return out


def gateway_class() -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GatewayClass",
        "metadata": meta("higress", None),
        "spec": {"controllerName": CONTROLLER},
    }


def gateway(port: int, name: str = "gw") -> dict[str, Any]:
    listener = {
        "name": "http",
        "port": port,
        "protocol": "HTTP",
        "allowedRoutes": {"namespaces": {"from": "Same"}},
    }
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "Gateway",
        "metadata": meta(name),
        "spec": {"gatewayClassName": "higress", "listeners": [listener]},
    }


def grpc_service(name: str, target_port: int) -> dict[str, Any]:
    port = {"name": "grpc", "port": 50051, "targetPort": target_port, "appProtocol": "kubernetes.io/h2c"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "creationTimestamp": CREATED},
        "spec": {"ports": [port]},
    }


def grpc_endpoint_slice(service: str, port: int) -> dict[str, Any]:
    slice_ = endpoint_slice_manifest(service, port)
    slice_["ports"] = [{"name": "grpc", "port": port, "appProtocol": "kubernetes.io/h2c"}]
    return slice_


def grpc_route(name: str, service: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "GRPCRoute",
        "metadata": meta(name),
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [GRPC_HOST],
            "rules": [
                {
                    "matches": [
                        {
                            "method": {"type": "Exact", "service": "echo.Echo", "method": "Say"},
                            "headers": [{"type": "Exact", "name": "x-tenant", "value": "blue"}],
                        }
                    ],
                    "backendRefs": [{"name": service, "port": 50051}],
                }
            ],
        },
    }


def http_route(name: str, host: str, service: str, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/v1",
        "kind": "HTTPRoute",
        "metadata": meta(name),
        "spec": {
            "parentRefs": [{"name": "gw"}],
            "hostnames": [host],
            "rules": [
                {
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [{"name": service, "port": port}],
                }
            ],
        },
    }


def gateway_objects(stack: Stack) -> list[dict[str, Any]]:
    return [gateway_class(), gateway(stack.gateway_port)]


# -- helpers --------------------------------------------------------------------------------------


async def status_rows(stack: Stack, obj: str = "") -> list[dict[str, Any]]:
    """`xdsbus status --json [obj]`, parsed."""
    argv = [tool("xdsbus"), "status", "--nats-url", stack.nats.url, "--json"]
    if obj:
        argv.append(obj)
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=20)
    if proc.returncode not in (0, 1):
        raise AssertionError(f"xdsbus status exited with {proc.returncode}: {err.decode()}")
    rows = json.loads(out)
    assert isinstance(rows, list), rows
    return rows


def parent_condition(row: dict[str, Any], type_: str) -> tuple[str, str] | None:
    for parent in row.get("parents", []):
        for cond in parent.get("conditions", []):
            if cond["type"] == type_:
                return cond["status"], cond["reason"]
    return None


async def status_of(stack: Stack, code: int, path: str, host: str) -> bool:
    return (await stack.curl(path, host=host)).status == code


# -- tests ----------------------------------------------------------------------------------------


async def test_grpc_route_through_envoy(tmp_path: Path) -> None:
    backend = await GrpcBackend("grpc-a-1").start()
    try:
        async with Stack(tmp_path, edges=1, backends=("echo-a",), ingress=False) as stack:
            assert stack.envoy is not None
            target = f"127.0.0.1:{stack.gateway_port}"
            # The backend answers directly (the test's client and server work without Envoy).
            reply, initial, _ = await call(backend.address, SAY, b"direct", authority=GRPC_HOST)
            assert reply == b"direct|grpc-a-1"
            assert initial["x-backend"] == "grpc-a-1"

            stack.write(
                "grpc.yaml",
                [
                    *gateway_objects(stack),
                    grpc_service("grpc-echo", backend.port),
                    grpc_endpoint_slice("grpc-echo", backend.port),
                    grpc_route("echo", "grpc-echo"),
                ],
            )
            blue = (("x-tenant", "blue"), ("x-extra", "hello"))

            async def served() -> tuple[bytes, dict[str, str], dict[str, str]] | None:
                try:
                    return await call(target, SAY, b"hi", authority=GRPC_HOST, metadata=blue, timeout=3)
                except grpc.aio.AioRpcError:
                    return None

            reply, initial, trailing = await stack.wait(
                served, timeout=30, what="the GRPCRoute through Envoy"
            )
            assert reply == b"hi|grpc-a-1"
            assert initial["x-backend"] == "grpc-a-1"
            assert trailing["echo-x-tenant"] == "blue"
            assert trailing["echo-x-extra"] == "hello"

            # Not routed: another method, the header missing, another host. Envoy answers HTTP 404,
            # which gRPC maps to UNIMPLEMENTED; the backend is not called.
            calls = len(backend.calls)
            for method, metadata, authority in (
                ("/echo.Echo/Other", blue, GRPC_HOST),
                (SAY, (("x-tenant", "red"),), GRPC_HOST),
                (SAY, (), GRPC_HOST),
                (SAY, blue, "other.example.com"),
            ):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await call(target, method, b"x", authority=authority, metadata=metadata)
                assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED, (method, raised.value)
                # A trailers-only answer made by Envoy itself (grpc-status 12, no message).
                assert dict(raised.value.trailing_metadata() or ()).get("server") == "envoy"
            assert len(backend.calls) == calls

            # The GRPCRoute is accepted and its refs resolved.
            rows = await status_rows(stack, "GRPCRoute/demo/echo")
            assert len(rows) == 1, rows
            assert parent_condition(rows[0], "Accepted") == ("True", "Accepted"), rows
            assert parent_condition(rows[0], "ResolvedRefs") == ("True", "ResolvedRefs"), rows

            # Removing the route stops it being served.
            stack.write(
                "grpc.yaml",
                [
                    *gateway_objects(stack),
                    grpc_service("grpc-echo", backend.port),
                    grpc_endpoint_slice("grpc-echo", backend.port),
                ],
            )

            async def unrouted() -> bool:
                try:
                    await call(target, SAY, b"x", authority=GRPC_HOST, metadata=blue, timeout=3)
                except grpc.aio.AioRpcError as exc:
                    return exc.code() == grpc.StatusCode.UNIMPLEMENTED
                return False

            await stack.wait(unrouted, timeout=30, what="the removed GRPCRoute to stop serving")
    finally:
        await backend.stop()


async def test_gateway_and_ingress_share_a_port(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1, ingress=False) as stack:
        assert stack.envoy is not None
        stack.write("gateway.yaml", [*gateway_objects(stack), http_route("gw-route", GW_HOST, "echo-a")])
        stack.write("ingress.yaml", [ingress_manifest("ing", ING_HOST, [("/", "echo-b")])])
        assert await stack.wait_for_pod("/x", "echo-a-", host=GW_HOST, timeout=30) == "echo-a-7c9d5f-1"
        assert await stack.wait_for_pod("/y", "echo-b-", host=ING_HOST, timeout=30) == "echo-b-7c9d5f-1"
        response = await stack.curl("/x?q=1", host=GW_HOST)
        assert response.status == 200, response.text
        assert (response.json()["host"], response.json()["path"]) == (GW_HOST, "/x?q=1")
        assert (await stack.curl("/", host="unknown.example.com")).status == 404

        # Removing the Ingress leaves the Gateway's host serving.
        stack.remove("ingress.yaml")
        await stack.wait(lambda: status_of(stack, 404, "/y", ING_HOST), timeout=30, what="ingress removed")
        assert await stack.pod_for("/x", GW_HOST) == "echo-a-7c9d5f-1"

        # And the other way round: the Ingress back, then the HTTPRoute gone.
        stack.write("ingress.yaml", [ingress_manifest("ing", ING_HOST, [("/", "echo-b")])])
        assert await stack.wait_for_pod("/y", "echo-b-", host=ING_HOST, timeout=30) == "echo-b-7c9d5f-1"
        stack.write("gateway.yaml", gateway_objects(stack))
        await stack.wait(lambda: status_of(stack, 404, "/x", GW_HOST), timeout=30, what="HTTPRoute removed")
        assert await stack.pod_for("/y", ING_HOST) == "echo-b-7c9d5f-1"

        # Removing the whole Gateway (its class too) keeps the Ingress serving on the port.
        stack.remove("gateway.yaml")

        async def gateway_gone() -> bool:
            return not await status_rows(stack, "Gateway/demo/gw")

        await stack.wait(gateway_gone, timeout=30, what="the Gateway's status to go")
        assert await stack.pod_for("/y", ING_HOST) == "echo-b-7c9d5f-1"
        assert (await stack.curl("/x", host=GW_HOST)).status == 404


async def test_an_invalid_http_route_answers_500_and_is_reported(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1) as stack:
        assert stack.envoy is not None
        stack.write(
            "gateway.yaml",
            [
                *gateway_objects(stack),
                http_route("good", GW_HOST, "echo-a"),
                http_route("bad", "bad.example.com", "missing"),
            ],
        )
        assert await stack.wait_for_pod("/", "echo-a-", host=GW_HOST, timeout=30) == "echo-a-7c9d5f-1"
        await stack.wait(
            lambda: status_of(stack, 500, "/anything", "bad.example.com"), timeout=30, what="bad route 500"
        )

        async def reported() -> dict[str, Any] | None:
            rows = await status_rows(stack, "HTTPRoute/demo/bad")
            if rows and parent_condition(rows[0], "ResolvedRefs") == ("False", "BackendNotFound"):
                return rows[0]
            return None

        try:
            row = await stack.wait(reported, timeout=30, what="the bad route's status")
        except StackError:
            raise AssertionError(f"status: {await status_rows(stack)}") from None
        assert parent_condition(row, "Accepted") == ("True", "Accepted"), row
        good = await status_rows(stack, "HTTPRoute/demo/good")
        assert parent_condition(good[0], "ResolvedRefs") == ("True", "ResolvedRefs"), good

        # The rest keeps serving: the good route and the stack's own Ingress on the same port.
        assert await stack.pod_for("/", GW_HOST) == "echo-a-7c9d5f-1"
        assert await stack.pod_for("/a") == "echo-a-7c9d5f-1"
        assert await stack.pod_for("/") == "echo-b-7c9d5f-1"
