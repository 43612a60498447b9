"""watch-file records the module digest of a WasmPlugin without `spec.sha256` in the event it publishes
(docs/wasm-modules.md): pulled from a fake OCI registry with the plugin's imagePullSecret, pinned by
manifest digest; for a plugin with its own sha256 what its url serves; an unreachable module is
published with the reason."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.fakes.oci_registry import OciRegistry
from tests.support.wasm_modules import add_header_module, sha256_hex
from tests.watch_file.conftest import EventLog, StartWatcher, write
from xdsbus.events import Op
from xdsbus.wasm.facts import resolved_module


def plugin(name: str, url: str, extra: str = "") -> str:
    return f"""
    apiVersion: extensions.higress.io/v1alpha1
    kind: WasmPlugin
    metadata: {{name: {name}, namespace: higress-system}}
    spec:
      url: {url}
      defaultConfig: {{header: x-a, value: b}}
      {extra}
    """


async def test_module_digests_are_recorded(
    tmp_path: Path, events: EventLog, start_watcher: StartWatcher
) -> None:
    wasm = add_header_module()
    async with OciRegistry(users={"puller": "pw"}) as registry:
        manifest = registry.push_plugin("plugins/add-header", "1.0.0", wasm)
        auth = base64.b64encode(b"puller:pw").decode()
        docker_config = json.dumps({"auths": {registry.host: {"auth": auth}}})
        config = tmp_path / "config"
        write(
            config / "secret.yaml",
            f"""
            apiVersion: v1
            kind: Secret
            metadata: {{name: registry-pull, namespace: higress-system}}
            type: kubernetes.io/dockerconfigjson
            data:
              .dockerconfigjson: {base64.b64encode(docker_config.encode()).decode()}
            """,
        )
        image = registry.image_url("plugins/add-header", "1.0.0")
        write(config / "private.yaml", plugin("private", image, "imagePullSecret: registry-pull"))
        write(
            config / "pinned.yaml",
            plugin("pinned", image, f"sha256: {'a' * 64}\n      imagePullSecret: registry-pull")
            + "xdsbusModule: {sha256: "
            + "b" * 64
            + "}\n",
        )
        gone = "http://127.0.0.1:9/plugin.wasm"
        write(config / "gone.yaml", plugin("gone", gone))
        await start_watcher(config)
        await events.wait_sync_end("WasmPlugin")
    bodies = {e.key: e.body for e in events.of(Op.UPSERT, "WasmPlugin")}
    private = resolved_module(bodies["higress-system/private"])
    assert private is not None
    assert private.sha256 == sha256_hex(wasm)
    assert private.url == f"oci://{registry.host}/plugins/add-header@{manifest}"
    # The plugin names a digest its url does not serve: what the url serves is recorded (not the key a
    # user wrote), and the builder says in the plugin's status that they differ.
    pinned = resolved_module(bodies["higress-system/pinned"])
    assert pinned is not None and pinned.sha256 == sha256_hex(wasm)
    failed = resolved_module(bodies["higress-system/gone"])
    assert failed is not None and not failed.sha256
    assert gone in failed.error
