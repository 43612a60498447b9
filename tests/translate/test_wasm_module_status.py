"""What the watcher saw at the url of a WasmPlugin that names its sha256 shows in the plugin's status
(docs/wasm-modules.md): the edge, which serves modules, writes no status. The plugin is still served, so
Envoy applies its failStrategy."""

from __future__ import annotations

from typing import Any

from tests.translate.translator_harness import Harness
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import EXTENSION_CONFIG

SHA = "a" * 64
NS = "higress-system"
URL = "oci://registry.example/plugins/p:1.0"


def plugin(name: str, recorded: dict[str, str] | None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": name, "namespace": NS, "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"url": URL, "sha256": SHA, "defaultConfig": {"a": 1}, **spec},
    }
    if recorded is not None:
        body["xdsbusModule"] = recorded
    return body


def warnings(h: Harness, name: str) -> list[str]:
    status = h.status("WasmPlugin", f"{NS}/{name}")
    assert status is not None and status.state == Verdict.ACCEPTED, status
    return list(status.warnings)


def test_a_module_not_matching_its_sha256_and_one_not_fetched_are_warnings() -> None:
    h = Harness()
    h.put(
        plugin("matches", {"sha256": SHA, "url": f"oci://registry.example/plugins/p@sha256:{'c' * 64}"}),
        plugin("differs", {"sha256": "b" * 64, "url": URL}, failStrategy="FAIL_OPEN"),
        plugin("gone", {"error": f"image {URL}: connection refused"}),
    )
    assert not [w for w in warnings(h, "matches") if "module" in w]
    (differs,) = [w for w in warnings(h, "differs") if "module" in w]
    assert f"has sha256 {'b' * 64}, not spec.sha256 {SHA}" in differs
    assert "FAIL_OPEN: requests pass without the plugin" in differs
    (gone,) = [w for w in warnings(h, "gone") if "module" in w]
    assert "module not fetched by the watcher: image" in gone and "FAIL_CLOSE: requests get 503" in gone
    # Every plugin is still served: Envoy and failStrategy decide what traffic sees.
    assert {name.split("/")[2] for name in h.names(EXTENSION_CONFIG)} == {"matches", "differs", "gone"}
    h.assert_matches_full_build()
