"""watch-k8s records the module digest of a WasmPlugin without `spec.sha256` in the event it publishes
(docs/wasm-modules.md), pulling from a fake OCI registry with the plugin's imagePullSecret (a
kubernetes.io/dockerconfigjson Secret of the system namespace), and resolves again when the plugin
changes."""

from __future__ import annotations

import base64
import json

from tests.fakes.kube_api import FakeKubeApi
from tests.fakes.oci_registry import OciRegistry
from tests.support.wasm_modules import add_header_module, sha256_hex
from tests.watch_k8s.conftest import SYSTEM, EventLog, StartWatcher, custom, install_higress_crds, secret
from xdsbus.events import Op
from xdsbus.wasm.facts import resolved_module

WASM_PLUGIN = "extensions.higress.io/v1alpha1"


async def test_module_digest_is_resolved_with_the_pull_secret(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    install_higress_crds(kube)
    wasm = add_header_module()
    async with OciRegistry(users={"puller": "pw"}) as registry:
        first = registry.push_plugin("plugins/add-header", "1.0.0", wasm)
        config = json.dumps({"auths": {registry.host: {"username": "puller", "password": "pw"}}})
        kube.create(
            secret(
                "pull",
                SYSTEM,
                type_="kubernetes.io/dockerconfigjson",
                _dockerconfigjson=base64.b64encode(config.encode()).decode(),
            )
        )
        url = registry.image_url("plugins/add-header", "1.0.0")
        plugin = custom(WASM_PLUGIN, "WasmPlugin", "add-header", url=url, imagePullSecret="pull")
        kube.create(plugin)
        await start_watcher()

        def resolved(lg: EventLog) -> object:
            upserts = lg.of(Op.UPSERT, "WasmPlugin", f"{SYSTEM}/add-header")
            return upserts and resolved_module(upserts[-1].body)

        module = await events.wait_for(resolved, "the resolved module of add-header")
        assert module.sha256 == sha256_hex(wasm)
        assert module.url == f"oci://{registry.host}/plugins/add-header@{first}"

        # A new version under another tag: the changed plugin is resolved again.
        other = wasm + b"\0v2"
        second = registry.push_plugin("plugins/add-header", "2.0.0", other)
        plugin["spec"]["url"] = registry.image_url("plugins/add-header", "2.0.0")
        kube.update(plugin)

        def moved(lg: EventLog) -> object:
            found = resolved(lg)
            return found if found and found.sha256 == sha256_hex(other) else None

        module = await events.wait_for(moved, "add-header resolved to its new module")
        assert module.url.endswith(f"@{second}")
