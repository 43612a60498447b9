"""WasmPlugins end to end (one Stack for the module): the test module (tests/support/wasm/add_header.wat,
built by the suite) runs in a real Envoy, fetched from the edge by sha256 and configured through ECDS.
A plugin's configuration decides the response header; Ingress, domain and service rules apply only where
they match; two plugins run in phase and priority order; a configuration change reaches Envoy without
modifying or draining a listener (docs/wasm-plugins.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import IngressPath, cli_status, ingress, request
from tests.support.wasm_modules import add_header_module, sha256_hex
from xdsbus_dev.harness.stack import Stack, edge_installed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SYSTEM = "higress-system"
A_HOST = "a.wasm.example"
B_HOST = "b.wasm.example"
C_HOST = "c.wasm.example"
# Envoy counts every listener update and every filter chain it drains.
LISTENER_STATS = ("listener_manager.listener_modified", "listener_manager.total_filter_chains_draining")


def _plugin(name: str, url: str, sha256: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": SYSTEM, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"url": url, "sha256": sha256, **spec},
    }


def _header(name: str, value: str) -> dict[str, str]:
    return {"header": name, "value": value}


class Module:
    """The test module as a file the edge fetches (file://), and the plugins that use it."""

    def __init__(self, stack: Stack) -> None:
        data = add_header_module()
        path = stack.workdir / "modules" / "add_header.wasm"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        self.url = f"file://{path}"
        self.sha256 = sha256_hex(data)

    def tagger(self, default_value: str) -> dict[str, Any]:
        """x-tag: `default_value` everywhere, but `api-route` on Ingress api, `domain-b` on B_HOST and
        `service-b` on routes to echo-b (the first rule that matches wins)."""
        return _plugin(
            "tagger",
            self.url,
            self.sha256,
            defaultConfig=_header("x-tag", default_value),
            matchRules=[
                {"ingress": ["demo/api"], "config": _header("x-tag", "api-route")},
                {"domain": [B_HOST], "config": _header("x-tag", "domain-b")},
                {"service": ["echo-b.demo.svc.cluster.local"], "config": _header("x-tag", "service-b")},
            ],
        )

    def ordered(self, name: str, phase: str, priority: int) -> dict[str, Any]:
        """A plugin adding its own name to x-order."""
        return _plugin(
            name,
            self.url,
            self.sha256,
            phase=phase,
            priority=priority,
            defaultConfig=_header("x-order", name),
        )


# ECDS over both ADS flavours: State of the World and Delta.
@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["GRPC", "DELTA_GRPC"])
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    workdir = tmp_path_factory.mktemp("wasm")
    async with Stack(workdir, edges=1, backends=("echo-a", "echo-b"), api_type=request.param) as stack:
        stack.write(
            "wasm-ingresses.yaml",
            [
                ingress("site", {A_HOST: [IngressPath("/", "echo-a")]}),
                ingress("api", {A_HOST: [IngressPath("/api", "echo-b")]}),
                ingress("other", {B_HOST: [IngressPath("/", "echo-a")]}),
                ingress("third", {C_HOST: [IngressPath("/", "echo-b")]}),
            ],
        )
        yield stack


@pytest.fixture(scope="module")
def module(stack: Stack) -> Module:
    return Module(stack)


async def _headers(stack: Stack, host: str, target: str, name: str) -> list[str] | None:
    response = await request(stack, host, target)
    if response.status != 200:
        return None
    return [v for k, v in response.headers if k.lower() == name]


async def _wait_tags(stack: Stack, expected: dict[tuple[str, str], str]) -> None:
    """Until each (host, path) is answered with its x-tag value."""
    seen: dict[tuple[str, str], list[str] | None] = {}

    async def probe() -> bool:
        for host, target in expected:
            seen[(host, target)] = await _headers(stack, host, target, "x-tag")
        return all(seen[k] == [v] for k, v in expected.items())

    await stack.wait(probe, timeout=30, what=f"x-tag values {expected}, last {seen}")


async def _listener_stats(stack: Stack) -> dict[str, int]:
    assert stack.envoy is not None
    stats = await stack.envoy.stats()
    return {name: stats.get(name, 0) for name in LISTENER_STATS}


async def test_rules_apply_where_they_match_and_a_config_change_drains_no_listener(
    stack: Stack, module: Module
) -> None:
    initial = await _listener_stats(stack)
    stack.write("wasm-tagger.yaml", [module.tagger("v1")])
    # A/api goes to echo-b too, but the Ingress rule comes first.
    tags = {
        (A_HOST, "/"): "v1",
        (A_HOST, "/api"): "api-route",
        (B_HOST, "/"): "domain-b",
        (C_HOST, "/"): "service-b",
    }
    await _wait_tags(stack, tags)
    (status,) = await cli_status(stack, f"WasmPlugin/{SYSTEM}/tagger")
    assert status["state"] == "accepted", status
    assert "4 filter instance(s)" in status["reason"] and not status.get("warnings"), status
    before = await _listener_stats(stack)
    # A new plugin is a new filter in the chain: that does modify the listener.
    assert before["listener_manager.listener_modified"] > initial["listener_manager.listener_modified"]
    stack.write("wasm-tagger.yaml", [module.tagger("v2")])
    await _wait_tags(stack, {**tags, (A_HOST, "/"): "v2"})
    # ECDS carried the new value: the listener was neither modified nor drained.
    assert await _listener_stats(stack) == before
    stack.remove("wasm-tagger.yaml")
    await _wait_tags(stack, {})

    async def untagged() -> bool:
        return await _headers(stack, A_HOST, "/", "x-tag") == []

    await stack.wait(untagged, timeout=30, what="x-tag gone with the plugin")


async def test_two_plugins_run_in_phase_then_priority_order(stack: Stack, module: Module) -> None:
    # The chain runs AUTHN before STATS, and a higher priority first within a phase. Response headers
    # are added on the way back, in the reverse order: the last filter of the chain adds first.
    stack.write(
        "wasm-order.yaml",
        [
            module.ordered("stats", "STATS", 100),
            module.ordered("authn-low", "AUTHN", 1),
            module.ordered("authn-high", "AUTHN", 50),
        ],
    )

    async def order() -> list[str] | None:
        values = await _headers(stack, A_HOST, "/", "x-order")
        return values if values and len(values) == 3 else None

    assert await stack.wait(order, timeout=30, what="three plugins adding x-order") == [
        "stats",
        "authn-low",
        "authn-high",
    ]
    # Swapping the priorities swaps the two AUTHN plugins.
    stack.write(
        "wasm-order.yaml",
        [
            module.ordered("stats", "STATS", 100),
            module.ordered("authn-low", "AUTHN", 60),
            module.ordered("authn-high", "AUTHN", 50),
        ],
    )

    async def swapped() -> bool:
        return await _headers(stack, A_HOST, "/", "x-order") == ["stats", "authn-high", "authn-low"]

    await stack.wait(swapped, timeout=30, what="the AUTHN plugins swapped")
    stack.remove("wasm-order.yaml")
