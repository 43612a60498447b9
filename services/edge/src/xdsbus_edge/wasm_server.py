"""The edge's module port (--wasm-listen): Envoy's wasm filters fetch `/modules/<sha256>.wasm` from it
through the bootstrap cluster `xdsbus_wasm_modules` (docs/wasm-modules.md).

A module is served from the disk cache (wasm_store.py) or fetched from the source the ledger names for
it (wasm_index.py), verified against its sha256 and kept. A digest no followed scope names is 404; a
module that cannot be fetched or does not match its digest is 503, so Envoy's `fail_open` (the plugin's
failStrategy) decides what traffic sees, and the failure is logged and counted naming the plugin. A
failed fetch is not tried again for `retry_after` seconds (Envoy retries on its own schedule), and one
module is fetched once however many proxies ask at the same time. Everything runs on the event loop:
nothing here holds up xDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

from xdsbus.contract.wasm_modules import MODULE_SUFFIX, MODULES_PATH_PREFIX, ModuleSource, is_sha256
from xdsbus.wasm.credentials import Credentials, DockerConfig
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus.wasm.references import parse_image, scheme_of
from xdsbus_edge.metrics import Counter, Gauge, Registry
from xdsbus_edge.snapshot import Snapshot
from xdsbus_edge.wasm_index import ModuleIndex
from xdsbus_edge.wasm_store import ModuleStore

log = logging.getLogger(__name__)

WASM_CONTENT_TYPE = "application/wasm"


@dataclass(frozen=True)
class _Failure:
    at: float
    error: ModuleFetchError


class ModuleServer:
    """Serves, fetches and caches the modules the ledger names."""

    def __init__(
        self,
        store: ModuleStore,
        fetcher: ModuleFetcher,
        registry: Registry,
        *,
        credentials: DockerConfig | None = None,
        retry_after: float = 5.0,
    ) -> None:
        self.index = ModuleIndex()
        self.store = store
        self.fetcher = fetcher
        self.credentials = credentials
        self.retry_after = retry_after
        self._fetching: dict[str, asyncio.Task[bytes]] = {}
        self._failed: dict[str, _Failure] = {}
        self._prefetches: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.served: Counter = registry.register(  # type: ignore[assignment]
            Counter("xdsbus_edge_wasm_module_requests", "Module requests from proxies, by answer.", ["code"])
        )
        self.failures: Counter = registry.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_wasm_module_fetch_failures",
                "Module fetches that failed or did not match their sha256, by plugin and reason.",
                ["plugin", "reason"],
            )
        )
        registry.register(
            Gauge(
                "xdsbus_edge_wasm_module_cache_bytes",
                "Bytes of verified modules in the disk cache.",
                function=lambda: {(): float(self.store.usage()[1])},
            )
        )

    async def start(self, host: str, port: int) -> int:
        """Open the cache and listen; returns the bound port."""
        await asyncio.to_thread(self.store.open)
        app = web.Application()
        app.router.add_get(MODULES_PATH_PREFIX + "{name}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        """Stop listening and fetching, close the HTTP session."""
        for task in [*self._prefetches, *self._fetching.values()]:
            task.cancel()
        await asyncio.gather(*self._prefetches, *self._fetching.values(), return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.fetcher.close()

    def learn(self, snap: Snapshot, followed: Iterable[str] = ()) -> None:
        """A scope switched to `snap`: note its modules (and drop those of scopes no longer `followed`)
        and fetch the new ones ahead of Envoy's ask."""
        for module in self.index.update(snap, followed):
            task = asyncio.create_task(self._prefetch(module), name=f"prefetch {module.sha256[:12]}")
            self._prefetches.add(task)
            task.add_done_callback(self._prefetches.discard)

    async def module(self, sha256: str) -> bytes | None:
        """The verified module, fetched if needed; None when no followed scope names it. Raises
        ModuleFetchError when it cannot be had."""
        cached = await self.store.get(sha256)
        if cached is not None:
            return cached
        sources = self.index.sources(sha256)
        if not sources:
            return None
        failure = self._failed.get(sha256)
        if failure is not None and time.monotonic() - failure.at < self.retry_after:
            raise failure.error
        task = self._fetching.get(sha256)
        if task is None:
            task = self._fetching[sha256] = asyncio.create_task(self._fetch(sha256, sources))
            task.add_done_callback(lambda _t: self._fetching.pop(sha256, None))
        return await asyncio.shield(task)

    async def _prefetch(self, module: ModuleSource) -> None:
        try:
            await self.module(module.sha256)
        except ModuleFetchError:
            pass  # reported by _fetch; Envoy's own request gets the 503

    async def _fetch(self, sha256: str, sources: list[str]) -> bytes:
        """The module from the first of its sources that serves bytes with its digest."""
        errors: list[ModuleFetchError] = []
        for source in sources:
            try:
                module = await self.fetcher.fetch(
                    source, sha256=sha256, credentials=self._credentials(source)
                )
            except ModuleFetchError as exc:
                errors.append(exc)
                continue
            self._failed.pop(sha256, None)
            await self.store.put(sha256, module.wasm)
            log.info("wasm module %s fetched from %s", sha256, source)
            return module.wasm
        error = (
            errors[0] if len(errors) == 1 else ModuleFetchError("; ".join(map(str, errors)), errors[0].reason)
        )
        self._failed[sha256] = _Failure(time.monotonic(), error)
        plugins = self.index.plugins(sha256) or ["unknown"]
        for plugin in plugins:
            self.failures.inc(plugin, error.reason)
        log.error("WasmPlugin %s: module %s cannot be served: %s", ", ".join(plugins), sha256, error)
        raise error

    def _credentials(self, url: str) -> Credentials | None:
        if self.credentials is None:
            return None
        try:
            if scheme_of(url) != "oci":
                return None
            return self.credentials.for_registry(parse_image(url).registry)
        except ModuleFetchError:
            return None

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        sha256 = name.removesuffix(MODULE_SUFFIX)
        if not name.endswith(MODULE_SUFFIX) or not is_sha256(sha256):
            return self._answer(404, f"not a module name: {name}\n")
        try:
            data = await self.module(sha256)
        except ModuleFetchError as exc:
            return self._answer(503, f"module {sha256} cannot be served: {exc}\n", retry=True)
        if data is None:
            return self._answer(404, f"no followed scope names module {sha256}\n")
        self.served.inc("200")
        return web.Response(body=data, content_type=WASM_CONTENT_TYPE)

    def _answer(self, status: int, text: str, retry: bool = False) -> web.Response:
        self.served.inc(str(status))
        headers = {"Retry-After": str(max(1, round(self.retry_after)))} if retry else None
        return web.Response(status=status, text=text, headers=headers)
