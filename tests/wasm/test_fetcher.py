"""xdsbus.wasm's fetcher against a fake OCI registry that speaks the distribution protocol and docker
token authentication (tests/fakes/oci_registry.py), a plain HTTP server and local files."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.fakes.oci_registry import OciRegistry, plugin_layer
from tests.support.wasm_modules import add_header_module, sha256_hex
from xdsbus.wasm.credentials import Credentials, DockerConfig
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus.wasm.fetcher import ModuleFetcher

WASM = add_header_module()
SHA = sha256_hex(WASM)


@pytest.fixture
async def fetcher() -> AsyncIterator[ModuleFetcher]:
    async with ModuleFetcher(timeout=10) as f:
        yield f


@pytest.mark.parametrize("layout", ["docker", "oci", "artifact", "index"])
async def test_pulls_the_module_from_each_image_layout(fetcher: ModuleFetcher, layout: str) -> None:
    async with OciRegistry() as registry:
        manifest = registry.push_plugin("plugins/add-header", "1.0.0", WASM, layout=layout)
        module = await fetcher.fetch(registry.image_url("plugins/add-header", "1.0.0"))
    assert module.wasm == WASM
    assert module.sha256 == SHA
    # Pinned by the digest of the manifest the module came from (the inner one for an index).
    inner = registry.manifest("plugins/add-header", manifest)
    pinned = inner["manifests"][0]["digest"] if layout == "index" else manifest
    assert module.url == f"oci://{registry.host}/plugins/add-header@{pinned}"


async def test_a_pinned_reference_fetches_the_same_bytes_after_the_tag_moved(fetcher: ModuleFetcher) -> None:
    async with OciRegistry() as registry:
        registry.push_plugin("p", "latest", WASM)
        first = await fetcher.fetch(registry.image_url("p", "latest"))
        other = WASM + b"\0custom"  # a custom section: still a module, other bytes
        registry.push_plugin("p", "latest", other)
        assert (await fetcher.fetch(registry.image_url("p", "latest"))).wasm == other
        assert (await fetcher.fetch(first.url)).wasm == WASM


async def test_bearer_challenge_with_pull_secret_credentials(fetcher: ModuleFetcher) -> None:
    secret = json.dumps({"auths": {"REGISTRY": {"auth": base64.b64encode(b"alice:s3cret").decode()}}})
    async with OciRegistry(users={"alice": "s3cret"}) as registry:
        registry.push_plugin("private/plugin", "v1", WASM)
        config = DockerConfig.parse(secret.replace("REGISTRY", f"https://{registry.host}/v1/"))
        creds = config.for_registry(registry.host)
        assert creds == Credentials("alice", "s3cret")
        module = await fetcher.fetch(registry.image_url("private/plugin", "v1"), credentials=creds)
        assert module.sha256 == SHA
        token_asks = [r for r in registry.requests if r.startswith("GET /token")]
        # One token per pull, asked for the repository's pull scope at the realm the challenge named.
        assert len(token_asks) == 1
        assert "scope=repository:private/plugin:pull" in token_asks[0]
        assert "service=fake-registry" in token_asks[0]


async def test_wrong_or_missing_credentials_are_named(fetcher: ModuleFetcher) -> None:
    async with OciRegistry(users={"alice": "s3cret"}) as registry:
        registry.push_plugin("private/plugin", "v1", WASM)
        url = registry.image_url("private/plugin", "v1")
        with pytest.raises(ModuleFetchError) as wrong:
            await fetcher.fetch(url, credentials=Credentials("alice", "nope"))
        with pytest.raises(ModuleFetchError) as missing:
            await fetcher.fetch(url)
    assert wrong.value.reason == missing.value.reason == "unauthorized"
    assert url in str(wrong.value) and "token endpoint" in str(wrong.value)
    assert "no credentials configured" in str(missing.value)


async def test_anonymous_token_for_a_public_image(fetcher: ModuleFetcher) -> None:
    async with OciRegistry(users={}, anonymous_pull=True, redirect_blobs=True) as registry:
        registry.push_plugin("public/plugin", "v1", WASM, layout="artifact")
        assert (await fetcher.fetch(registry.image_url("public/plugin", "v1"))).wasm == WASM
        assert any(r.startswith("GET /storage/") for r in registry.requests)


async def test_a_blob_that_does_not_match_its_digest_is_refused(fetcher: ModuleFetcher) -> None:
    async with OciRegistry() as registry:
        digest = registry.push_plugin("p", "v1", WASM)
        layer = registry.manifest("p", digest)["layers"][0]["digest"]
        registry.corrupt_blob(layer)
        with pytest.raises(ModuleFetchError) as caught:
            await fetcher.fetch(registry.image_url("p", "v1"))
    assert caught.value.reason == "bad_digest"
    assert f"layer should have digest {layer}" in str(caught.value)


async def test_expected_sha256_is_checked(fetcher: ModuleFetcher) -> None:
    async with OciRegistry() as registry:
        registry.push_plugin("p", "v1", WASM)
        with pytest.raises(ModuleFetchError) as caught:
            await fetcher.fetch(registry.image_url("p", "v1"), sha256="0" * 64)
        assert (
            await fetcher.fetch(registry.image_url("p", "v1"), sha256="SHA256:" + SHA.upper())
        ).sha256 == SHA
    assert caught.value.reason == "bad_digest"
    assert f"hashes to {SHA}" in str(caught.value)


async def test_unknown_image_and_tag_layer_without_plugin_wasm(fetcher: ModuleFetcher) -> None:
    async with OciRegistry() as registry:
        registry.push_plugin("p", "v1", WASM)
        with pytest.raises(ModuleFetchError) as no_repo:
            await fetcher.fetch(registry.image_url("nope", "v1"))
        with pytest.raises(ModuleFetchError) as no_tag:
            await fetcher.fetch(registry.image_url("p", "v2"))
        layer = plugin_layer(WASM, name="main.wasm")
        config = registry.push_blob(b"{}")
        registry.push_manifest(
            "p",
            "wrong",
            "application/vnd.oci.image.manifest.v1+json",
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": config,
                    "size": 2,
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                        "digest": registry.push_blob(layer),
                        "size": len(layer),
                    }
                ],
            },
        )
        with pytest.raises(ModuleFetchError) as no_plugin:
            await fetcher.fetch(registry.image_url("p", "wrong"))
    assert no_repo.value.reason == no_tag.value.reason == "not_found"
    assert "HTTP 404" in str(no_tag.value)
    assert no_plugin.value.reason == "bad_layout"
    assert "no plugin.wasm" in str(no_plugin.value)


async def test_unreachable_registry(fetcher: ModuleFetcher) -> None:
    registry = await OciRegistry().start()
    url = registry.image_url("p", "v1")
    await registry.stop()
    with pytest.raises(ModuleFetchError) as caught:
        await fetcher.fetch(url)
    assert caught.value.reason == "unreachable"
    assert url in str(caught.value)


async def test_http_and_file_urls(fetcher: ModuleFetcher, tmp_path: Path) -> None:
    async def module(request: web.Request) -> web.Response:
        if request.path == "/plugin.wasm":
            return web.Response(body=WASM)
        if request.path == "/not-wasm":
            return web.Response(body=b"<html>")
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/{name}", module)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        module_http = await fetcher.fetch(f"http://127.0.0.1:{port}/plugin.wasm", sha256=SHA)
        assert (module_http.sha256, module_http.url) == (SHA, f"http://127.0.0.1:{port}/plugin.wasm")
        with pytest.raises(ModuleFetchError, match="HTTP 404") as missing:
            await fetcher.fetch(f"http://127.0.0.1:{port}/missing.wasm")
        assert missing.value.reason == "not_found"
        with pytest.raises(ModuleFetchError, match="not WebAssembly"):
            await fetcher.fetch(f"http://127.0.0.1:{port}/not-wasm")
    finally:
        await runner.cleanup()
    path = tmp_path / "plugin.wasm"
    path.write_bytes(WASM)
    assert (await fetcher.fetch(path.as_uri())).sha256 == SHA
    with pytest.raises(ModuleFetchError, match="no such file"):
        await fetcher.fetch((tmp_path / "gone.wasm").as_uri())


async def test_bad_urls_name_the_problem(fetcher: ModuleFetcher) -> None:
    for url, words in (
        ("ftp://host/x.wasm", "scheme 'ftp'"),
        ("oci://registry.test", "expected oci://registry/repository"),
        ("oci://registry.test/Upper/Case:v1", "invalid repository name"),
        ("oci://registry.test/p@sha256:abc", "is not sha256:<64 hex>"),
    ):
        with pytest.raises(ModuleFetchError, match=words) as caught:
            await fetcher.fetch(url)
        assert caught.value.reason == "bad_url"
