"""The edge's module port: modules the ledger's wasm filters name are fetched from their source (a fake
OCI registry, a file), verified, cached on disk and served to a real Envoy; a module that does not match
its sha256 or cannot be fetched is answered 503, and Envoy's fail_open (the plugin's failStrategy) decides
what traffic sees."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from envoy.config.core.v3 import extension_pb2
from envoy.extensions.filters.http.wasm.v3 import wasm_pb2
from google.protobuf import any_pb2

from tests.fakes.oci_registry import OciRegistry
from tests.support.wasm_modules import add_header_module, sha256_hex
from tests.wasm.envoy_static import bootstrap, start_envoy, wasm_filter
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.wasm_modules import MODULES_CLUSTER, module_uri
from xdsbus.wasm.credentials import DockerConfig
from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus_dev.harness import http
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import eventually, free_port
from xdsbus_edge.metrics import Registry
from xdsbus_edge.snapshot import CachedResource, next_snapshot
from xdsbus_edge.wasm_index import EXTENSION_CONFIG
from xdsbus_edge.wasm_server import ModuleServer
from xdsbus_edge.wasm_store import ModuleStore

WASM = add_header_module()
GOOD = sha256_hex(WASM)
OTHER = sha256_hex(b"\0asm\x01\0\0\0 what the plugin says it is")


def ecds(name: str, sha256: str, source: str, plugin: str) -> tuple[ResourceKey, CachedResource]:
    """An ECDS resource as the translator writes it: a wasm filter fetching `sha256` from the edge."""
    wasm = wasm_pb2.Wasm()
    remote = wasm.config.vm_config.code.remote
    remote.http_uri.uri = module_uri(sha256, source=source, plugin=plugin)
    remote.http_uri.cluster = MODULES_CLUSTER
    remote.sha256 = sha256
    config = extension_pb2.TypedExtensionConfig(name=name)
    config.typed_config.Pack(wasm)
    wrapper = any_pb2.Any()
    wrapper.Pack(config)
    body = wrapper.SerializeToString()
    return ResourceKey(EXTENSION_CONFIG, name), CachedResource(
        EXTENSION_CONFIG, name, hashlib.sha256(body).hexdigest(), body
    )


@dataclass
class Modules:
    server: ModuleServer
    registry: OciRegistry
    metrics: Registry
    unreachable: str

    async def get(self, sha256: str) -> http.Response:
        return await http.get("127.0.0.1", self.server.port, f"/modules/{sha256}.wasm")


@pytest.fixture
async def modules(tmp_path: Path) -> AsyncIterator[Modules]:
    registry = await OciRegistry(users={"edge": "pw"}).start()
    registry.push_plugin("plugins/add-header", "1.0.0", WASM)
    closed = await OciRegistry().start()
    unreachable = closed.image_url("plugins/gone", "1.0.0")
    await closed.stop()
    metrics = Registry()
    auth = DockerConfig.parse(f'{{"auths": {{"{registry.host}": {{"username": "edge", "password": "pw"}}}}}}')
    server = ModuleServer(
        ModuleStore(tmp_path / "cache", max_bytes=1 << 20),
        ModuleFetcher(timeout=5),
        metrics,
        credentials=auth,
        retry_after=0.2,
    )
    await server.start("127.0.0.1", 0)
    changes = dict(
        [
            ecds("good", GOOD, registry.image_url("plugins/add-header", "1.0.0"), "higress-system/good"),
            # The image holds WASM, whose digest is not OTHER: a plugin whose sha256 is wrong.
            ecds(
                "bad-sha", OTHER, registry.image_url("plugins/add-header", "1.0.0"), "higress-system/bad-sha"
            ),
            ecds("gone", sha256_hex(b"gone"), unreachable, "higress-system/gone"),
        ]
    )
    server.learn(next_snapshot(None, scope="default", version=1, digest="d", changes=changes))
    try:
        yield Modules(server, registry, metrics, unreachable)
    finally:
        await server.stop()
        await registry.stop()


def metric(metrics: Registry, line_start: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in metrics.render().splitlines() if line.startswith(line_start)
    )


async def test_serves_verified_modules_from_the_cache(modules: Modules, tmp_path: Path) -> None:
    first = await modules.get(GOOD)
    assert first.status == 200 and first.body == WASM
    assert first.header("content-type") == "application/wasm"
    asked = len(modules.registry.requests)
    again = await modules.get(GOOD)
    assert again.body == WASM
    assert len(modules.registry.requests) == asked, "served from the cache, not pulled again"
    assert (tmp_path / "cache" / f"{GOOD}.wasm").read_bytes() == WASM
    # A digest no followed scope names is never fetched.
    assert (await modules.get("f" * 64)).status == 404
    assert (await modules.get("not-a-digest")).status == 404


async def test_a_wrong_sha256_and_an_unreachable_source_are_503_and_reported(modules: Modules) -> None:
    bad = await modules.get(OTHER)
    assert bad.status == 503
    assert f"hashes to {GOOD}" in bad.text
    gone = await modules.get(sha256_hex(b"gone"))
    assert gone.status == 503 and modules.unreachable in gone.text
    failures = 'xdsbus_edge_wasm_module_fetch_failures{plugin="higress-system/'
    assert metric(modules.metrics, failures + 'bad-sha",reason="bad_digest"}') >= 1
    assert metric(modules.metrics, failures + 'gone",reason="unreachable"}') >= 1
    # Nothing of a module that failed its digest is kept.
    assert await modules.server.store.get(OTHER) is None


async def test_the_cache_keeps_to_its_bound(tmp_path: Path) -> None:
    store = ModuleStore(tmp_path / "small", max_bytes=len(WASM) + 10)
    store.open()
    await store.put(GOOD, WASM)
    other = WASM + b"\0x"
    await store.put(sha256_hex(other), other)
    assert await store.get(GOOD) is None
    assert await store.get(sha256_hex(other)) == other
    # A damaged file is dropped, not served.
    (tmp_path / "small" / f"{sha256_hex(other)}.wasm").write_bytes(b"\0asm damaged")
    assert await store.get(sha256_hex(other)) is None
    assert store.usage() == (0, 0)


async def test_envoy_follows_fail_strategy(modules: Modules, tmp_path: Path) -> None:
    def remote(sha: str) -> dict[str, object]:
        return {
            "remote": {
                "http_uri": {"uri": module_uri(sha), "cluster": MODULES_CLUSTER, "timeout": "5s"},
                "sha256": sha,
                "retry_policy": {"num_retries": 1},
            }
        }

    config = {"header": "x-plugin", "value": "ran"}
    ports = {name: free_port() for name in ("good", "bad-open", "bad-close", "gone-open", "gone-close")}
    gone = sha256_hex(b"gone")
    listeners = {
        ports["good"]: [wasm_filter("good", remote(GOOD), config)],
        ports["bad-open"]: [wasm_filter("bad-open", remote(OTHER), config, fail_open=True)],
        ports["bad-close"]: [wasm_filter("bad-close", remote(OTHER), config)],
        ports["gone-open"]: [wasm_filter("gone-open", remote(gone), config, fail_open=True)],
        ports["gone-close"]: [wasm_filter("gone-close", remote(gone), config)],
    }
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap(free_port(), listeners, modules.server.port)))
    proc = start_envoy(path, tmp_path / "envoy.log")
    try:
        for port in ports.values():
            await http.wait_listening(port, timeout=30)

        async def answers() -> dict[str, tuple[int, str | None]]:
            out = {}
            for name, port in ports.items():
                response = await http.get("127.0.0.1", port, "/")
                out[name] = (response.status, response.header("x-plugin"))
            return out

        expected = {
            "good": (200, "ran"),
            "bad-open": (200, None),
            "gone-open": (200, None),
            "bad-close": (503, None),
            "gone-close": (503, None),
        }
        seen: dict[str, tuple[int, str | None]] = {}

        async def settled() -> bool:
            seen.update(await answers())
            assert seen == expected, seen
            return True

        await eventually(settled, timeout=20, what="each listener answers as its failStrategy says")
    finally:
        await terminate_process(proc)


async def test_a_scope_no_longer_followed_names_no_module(modules: Modules) -> None:
    other = WASM + b"\0other"
    modules.registry.push_plugin("plugins/other", "1.0.0", other)
    url = modules.registry.image_url("plugins/other", "1.0.0")
    changes = dict([ecds("other", sha256_hex(other), url, "higress-system/other")])
    modules.server.learn(next_snapshot(None, scope="gateway.demo.gw", version=1, digest="o", changes=changes))
    assert (await modules.get(sha256_hex(other))).body == other
    # The scope was released: a later switch of the scope still followed forgets what it named.
    await asyncio.to_thread(lambda: (modules.server.store.directory / f"{sha256_hex(other)}.wasm").unlink())
    modules.server.learn(
        next_snapshot(None, scope="default", version=2, digest="d2", changes={}), ["default"]
    )
    assert (await modules.get(sha256_hex(other))).status == 404
