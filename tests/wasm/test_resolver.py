"""How a watcher resolves a WasmPlugin's module digest (xdsbus.wasm.resolver): imagePullPolicy as in
Higress, the pull secret, and an unreachable registry keeping the digest resolved before."""

from __future__ import annotations

import base64
import json
from typing import Any

from tests.fakes.oci_registry import OciRegistry
from tests.support.wasm_modules import add_header_module, sha256_hex
from xdsbus.wasm.facts import resolved_module
from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus.wasm.resolver import ALWAYS, IF_NOT_PRESENT, ModuleResolver, pull_policy

WASM = add_header_module()
V2 = WASM + b"\0v2"


def body(url: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "p", "namespace": "higress-system"},
        "spec": {"url": url, **spec},
    }


async def no_secret(_namespace: str, _name: str) -> bytes | None:
    return None


def test_pull_policy_follows_higress() -> None:
    assert pull_policy(None, "oci://r.example/p:1.0") == IF_NOT_PRESENT
    assert pull_policy("UNSPECIFIED_POLICY", "oci://r.example/p:latest") == ALWAYS
    assert pull_policy(None, "oci://r.example/p") == ALWAYS
    assert pull_policy("IfNotPresent", "oci://r.example/p:latest") == IF_NOT_PRESENT
    assert pull_policy("Always", "https://h.example/p.wasm") == ALWAYS
    assert pull_policy(None, "oci://r.example/p@sha256:" + "a" * 64) == IF_NOT_PRESENT


async def test_if_not_present_keeps_the_digest_and_always_follows_the_tag() -> None:
    resolver = ModuleResolver(ModuleFetcher(timeout=5))
    async with OciRegistry() as registry:
        registry.push_plugin("p", "1.0", WASM)
        registry.push_plugin("p", "latest", WASM)
        pinned_url, latest_url = registry.image_url("p", "1.0"), registry.image_url("p", "latest")
        first = resolved_module(await resolver.resolve_plugin(body(pinned_url), no_secret))
        latest = resolved_module(await resolver.resolve_plugin(body(latest_url), no_secret))
        registry.push_plugin("p", "1.0", V2)
        registry.push_plugin("p", "latest", V2)
        again = resolved_module(await resolver.resolve_plugin(body(pinned_url), no_secret))
        moved = resolved_module(await resolver.resolve_plugin(body(latest_url), no_secret))
        forced = resolved_module(
            await resolver.resolve_plugin(body(pinned_url, imagePullPolicy="Always"), no_secret)
        )
    assert first == again and first is not None and first.sha256 == sha256_hex(WASM)
    assert latest is not None and latest.sha256 == sha256_hex(WASM)
    assert moved is not None and moved.sha256 == sha256_hex(V2)
    assert forced is not None and forced.sha256 == sha256_hex(V2)
    # The registry is gone: Always keeps what it resolved last rather than reporting an error.
    kept = resolved_module(await resolver.resolve_plugin(body(latest_url), no_secret))
    assert kept == moved


async def test_pull_secret_and_its_absence() -> None:
    resolver = ModuleResolver(ModuleFetcher(timeout=5))
    async with OciRegistry(users={"u": "pw"}) as registry:
        registry.push_plugin("private", "1.0", WASM)
        url = registry.image_url("private", "1.0")
        config = json.dumps({"auths": {registry.host: {"auth": base64.b64encode(b"u:pw").decode()}}})

        async def secret(namespace: str, name: str) -> bytes | None:
            return config.encode() if (namespace, name) == ("higress-system", "pull") else None

        found = resolved_module(await resolver.resolve_plugin(body(url, imagePullSecret="pull"), secret))
        missing = resolved_module(await resolver.resolve_plugin(body(url, imagePullSecret="nope"), secret))
        anonymous = resolved_module(await resolver.resolve_plugin(body(url), secret))
    assert found is not None and found.sha256 == sha256_hex(WASM)
    assert missing is not None and "imagePullSecret higress-system/nope is not known" in missing.error
    assert anonymous is not None and "no credentials configured" in anonymous.error


async def test_a_plugin_naming_its_sha256_gets_what_its_url_serves_recorded() -> None:
    resolver = ModuleResolver(ModuleFetcher(timeout=5))
    async with OciRegistry() as registry:
        registry.push_plugin("p", "1.0", WASM)
        url = registry.image_url("p", "1.0")
        # A key of the watcher's name written by a user never passes for the watcher's record.
        written = {**body(url, sha256="a" * 64), "xdsbusModule": {"sha256": "b" * 64}}
        published = await resolver.resolve_plugin(written, no_secret)
    assert published["spec"] == written["spec"]
    recorded = resolved_module(published)
    # What the url serves does not match the plugin's sha256: the builder says so in its status.
    assert recorded is not None and recorded.sha256 == sha256_hex(WASM)
    assert resolved_module(await resolver.resolve_plugin(body(""), no_secret)) is None
