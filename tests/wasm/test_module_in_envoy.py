"""The test module (tests/support/wasm/add_header.wat, built by the suite) in a real Envoy 1.40 on the
V8 runtime: read from a file, and fetched over HTTP through the module cluster with its sha256, two
instances with their own configuration in one VM."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.wasm_modules import add_header_module, sha256_hex
from tests.wasm.envoy_static import bootstrap, start_envoy, wasm_filter
from xdsbus.contract.wasm_modules import MODULES_CLUSTER, module_path, module_uri
from xdsbus_dev.harness import http
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import free_port


async def _serve_modules(modules: dict[str, bytes]) -> tuple[web.AppRunner, int, list[str]]:
    asked: list[str] = []

    async def module(request: web.Request) -> web.Response:
        asked.append(request.path)
        for sha, data in modules.items():
            if request.path == module_path(sha):
                return web.Response(body=data)
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/modules/{name}", module)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, site._server.sockets[0].getsockname()[1], asked  # type: ignore[union-attr]


@pytest.fixture
async def envoy_with_modules(tmp_path: Path) -> AsyncIterator[tuple[int, list[str]]]:
    wasm = add_header_module()
    module_file = tmp_path / "add_header.wasm"
    module_file.write_bytes(wasm)
    sha = sha256_hex(wasm)
    runner, modules_port, asked = await _serve_modules({sha: wasm})
    remote = {
        "remote": {
            "http_uri": {
                "uri": module_uri(sha, source="file:///unused", plugin="ns/b"),
                "cluster": MODULES_CLUSTER,
                "timeout": "10s",
            },
            "sha256": sha,
        }
    }
    filters = [
        wasm_filter("a", {"local": {"filename": str(module_file)}}, {"header": "x-a", "value": "from-a"}),
        wasm_filter("b", remote, {"value": "from-b", "header": "x-b"}),
    ]
    admin_port, port = free_port(), free_port()
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(bootstrap(admin_port, {port: filters}, modules_port)))
    proc = start_envoy(path, tmp_path / "envoy.log")
    try:
        await http.wait_listening(port, timeout=20)
        yield port, asked
    finally:
        await terminate_process(proc)
        await runner.cleanup()


async def test_each_instance_adds_the_header_its_configuration_names(
    envoy_with_modules: tuple[int, list[str]],
) -> None:
    port, asked = envoy_with_modules
    response = await http.get("127.0.0.1", port, "/", host_header="any.test")
    assert response.status == 200, response.text
    assert response.header("x-a") == "from-a"
    assert response.header("x-b") == "from-b"
    # Envoy fetched the remote module once, at the path the contract names, and checked its sha256.
    assert asked == [module_path(sha256_hex(add_header_module()))]
