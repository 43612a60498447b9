"""WasmPlugin modules end to end (docs/wasm-modules.md): watch-file resolves a plugin's module digest
from a fake OCI registry, the edge pulls and verifies the module and a real Envoy runs it; a wrong
sha256 and an unreachable URL each behave as the plugin's failStrategy says, the edge counts them and the
plugins' statuses say why; a plugin whose digest cannot be resolved is rejected with the reason. One
Stack for the module."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import IngressPath, cli_status, ingress, request
from tests.fakes.oci_registry import OciRegistry
from tests.support.wasm_modules import add_header_module, sha256_hex
from xdsbus_dev.harness.stack import Stack, edge_installed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SYSTEM = "higress-system"
WASM = add_header_module()
HOSTS = ("pulled", "bad-open", "bad-close", "gone-open", "gone-close")


def host(name: str) -> str:
    return f"{name}.modules.example"


def plugin(name: str, url: str, *, sha256: str = "", fail: str = "FAIL_CLOSE") -> dict[str, Any]:
    """A plugin adding `x-module: <name>`, enabled only on its own host."""
    spec: dict[str, Any] = {
        "url": url,
        "failStrategy": fail,
        "defaultConfigDisable": True,
        "matchRules": [{"domain": [host(name)], "config": {"header": "x-module", "value": name}}],
    }
    if sha256:
        spec["sha256"] = sha256
    return {
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": SYSTEM, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def registry() -> AsyncIterator[OciRegistry]:
    async with OciRegistry() as registry:
        registry.push_plugin("plugins/add-header", "1.0.0", WASM)
        yield registry


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with Stack(tmp_path_factory.mktemp("wasm-modules"), edges=1, backends=("echo-a",)) as stack:
        stack.write(
            "module-ingresses.yaml",
            [ingress(name, {host(name): [IngressPath("/", "echo-a")]}) for name in (*HOSTS, "unresolved")],
        )
        yield stack


async def test_modules_are_pulled_verified_and_failures_follow_fail_strategy(
    stack: Stack, registry: OciRegistry
) -> None:
    image = registry.image_url("plugins/add-header", "1.0.0")
    wrong = sha256_hex(b"not the module")
    gone = "http://127.0.0.1:9/add_header.wasm"
    stack.write(
        "module-plugins.yaml",
        [
            plugin("pulled", image),  # no sha256: watch-file resolves it
            plugin("bad-open", image, sha256=wrong, fail="FAIL_OPEN"),
            plugin("bad-close", image, sha256=wrong),
            # Envoy caches modules by sha256 alone: these name a module of their own.
            plugin("gone-open", gone, sha256=sha256_hex(WASM + b"\0gone"), fail="FAIL_OPEN"),
            plugin("gone-close", gone, sha256=sha256_hex(WASM + b"\0gone")),
            plugin("unresolved", gone),  # no sha256 and nothing to fetch it from
        ],
    )
    expected = {
        "pulled": (200, "pulled"),
        "bad-open": (200, None),
        "bad-close": (503, None),
        "gone-open": (200, None),
        "gone-close": (503, None),
    }
    seen: dict[str, tuple[int, str | None]] = {}

    async def answers() -> bool:
        for name in HOSTS:
            response = await request(stack, host(name))
            seen[name] = (response.status, response.header("x-module"))
        assert seen == expected, seen
        return True

    await stack.wait(answers, timeout=45, what="answers as failStrategy says")
    # The edge said which plugin's module failed and why.
    (edge,) = stack.edges
    failures = "xdsbus_edge_wasm_module_fetch_failures"
    assert await edge.metric(failures, plugin=f"{SYSTEM}/bad-close", reason="bad_digest") >= 1
    assert await edge.metric(failures, plugin=f"{SYSTEM}/gone-open", reason="unreachable") >= 1
    # The edge writes no status: what the watcher saw at each url shows in the plugins' statuses.
    (bad,) = await cli_status(stack, f"WasmPlugin/{SYSTEM}/bad-close")
    assert any(f"not spec.sha256 {wrong}" in w and "FAIL_CLOSE" in w for w in bad["warnings"]), bad
    (unreachable,) = await cli_status(stack, f"WasmPlugin/{SYSTEM}/gone-open")
    assert any("not fetched" in w and gone in w and "FAIL_OPEN" in w for w in unreachable["warnings"])
    # The plugin whose digest could not be resolved is not served, and its status names the reason.
    (status,) = await cli_status(stack, f"WasmPlugin/{SYSTEM}/unresolved")
    assert status["state"] == "rejected", status
    assert "not resolved" in status["reason"] and gone in status["reason"], status
    assert (await request(stack, host("unresolved"))).status == 200
