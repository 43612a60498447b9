"""The console's HTTP side: the single-page app (static files shipped in this package, nothing from
elsewhere) and the JSON API it reads (docs/console.md). Every route is a GET, and the console runs with
the reader's NATS credentials (docs/design.md §10), unless it is started with `--allow-rollback`: then it
runs as the operator and adds the two POSTs of rollback.py, which take an operator token.

    /api/config                          what this console offers (rollback or not)
    /api/scopes                          scopes and their head versions
    /api/scopes/{scope}/versions         the timeline (?from=V&to=V&limit=N), with each version's triggers
    /api/scopes/{scope}/versions/{v}     one version: its summary, changes and triggers
    /api/scopes/{scope}/diff?a=A&b=B     two versions side by side, as Envoy JSON
    /api/objects?q=TEXT&state=STATE      status entries (accepted, rejected and why, warnings)
    /api/scopes/{scope}/history?kind=K&key=NS/NAME   the versions an object's events went into
    /api/sources                         leases and registries
    /api/proxies                         each proxy's sync state
    /api/live                            server-sent events, one per ledger record
    POST /api/scopes/{scope}/rollback    {"version": V}: pin the scope to V (--allow-rollback only)
    POST /api/scopes/{scope}/unpin       release the scope's pin (--allow-rollback only)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from aiohttp import web

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.pins import PIN_STATUS_KIND
from xdsbus.ledger import reader
from xdsbus_console import object_history, objects, proxies, sources
from xdsbus_console.ledger_index import LedgerIndex, VersionSummary
from xdsbus_console.live import LedgerFeed
from xdsbus_console.rollback import Rollback
from xdsbus_console.triggers import TriggerReader
from xdsbus_console.version_diff import diff_versions, short_type

log = logging.getLogger(__name__)

# Versions a timeline request returns at most (the newest of the range asked for).
DEFAULT_LIMIT = 200
MAX_LIMIT = 5000
# Trigger reads at once while answering a timeline request.
_TRIGGER_CONCURRENCY = 8
# Seconds between comments on an idle event stream, so proxies in between keep it open.
_KEEPALIVE = 15.0

_STATIC = {
    "index.html": "text/html",
    "console.js": "text/javascript",
    "console.css": "text/css",
}
# The page loads only what this server serves: no CDN, no inline script.
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """A request the API answers with `status` and a message naming what is wrong."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(value: Any, status: int = 200) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")


def _int(request: web.Request, name: str, default: int | None = None) -> int:
    text = request.match_info.get(name) or request.query.get(name)
    if not text:
        if default is None:
            raise ApiError(400, f"{name} is required")
        return default
    try:
        return int(text)
    except ValueError:
        raise ApiError(400, f"{name} must be a whole number, not {text!r}") from None


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _json({"error": str(exc)}, exc.status)
    except reader.HistoryPurged as exc:
        response = _json({"error": str(exc)}, 410)
    except reader.VersionNotFound as exc:
        response = _json({"error": str(exc)}, 404)
    if not response.prepared:
        response.headers.update(_SECURITY_HEADERS)
    return response


class Console:
    """The routes over one bus connection."""

    def __init__(self, bus: Bus, stop: asyncio.Event, rollback: Rollback | None = None) -> None:
        self.bus = bus
        self.stop = stop
        # Set only with --allow-rollback and operator tokens.
        self.rollback = rollback
        self.ledger = LedgerIndex(bus)
        self.triggers = TriggerReader(bus)
        self.feed = LedgerFeed(bus)

    def app(self) -> web.Application:
        """The aiohttp application."""
        app = web.Application(middlewares=[_errors])
        app.router.add_get("/", self.page)
        app.router.add_get("/static/{name}", self.static)
        app.router.add_get("/api/scopes", self.scopes)
        app.router.add_get("/api/scopes/{scope}/versions", self.timeline)
        app.router.add_get("/api/scopes/{scope}/versions/{version}", self.version)
        app.router.add_get("/api/scopes/{scope}/diff", self.diff)
        app.router.add_get("/api/objects", self.objects)
        app.router.add_get("/api/scopes/{scope}/history", self.history)
        app.router.add_get("/api/sources", self.sources)
        app.router.add_get("/api/proxies", self.proxies)
        app.router.add_get("/api/live", self.live)
        app.router.add_get("/api/config", self.config)
        if self.rollback is not None:
            self.rollback.add_routes(app)
        return app

    async def config(self, _request: web.Request) -> web.Response:
        return _json({"rollback": self.rollback is not None})

    async def page(self, _request: web.Request) -> web.Response:
        return self._file("index.html")

    async def static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in _STATIC:
            raise ApiError(404, f"no file {name!r}")
        return self._file(name)

    def _file(self, name: str) -> web.Response:
        body = importlib.resources.files("xdsbus_console").joinpath("static", name).read_bytes()
        return web.Response(body=body, content_type=_STATIC[name], headers={"Cache-Control": "no-cache"})

    async def _heads(self) -> dict[str, int]:
        heads = {}
        for scope in await self.ledger.scopes():
            versions = await self.ledger.versions(scope)
            heads[scope] = versions[-1].version if versions else 0
        return heads

    async def scopes(self, _request: web.Request) -> web.Response:
        heads = await self._heads()
        return _json({"scopes": [{"scope": s, "head": v} for s, v in heads.items()]})

    async def timeline(self, request: web.Request) -> web.Response:
        scope = request.match_info["scope"]
        versions = await self.ledger.versions(scope)
        terms = await self.ledger.terms(scope)
        low = _int(request, "from", 0)
        high = _int(request, "to", versions[-1].version if versions else 0)
        limit = min(max(_int(request, "limit", DEFAULT_LIMIT), 1), MAX_LIMIT)
        picked = [v for v in versions if low <= v.version <= high][-limit:]
        rows = await self._with_triggers(picked)
        # A term record sits after the version it names: those between the range's first version's
        # parent and its last version fall inside it.
        after = picked[0].parent if picked else low
        return _json(
            {
                "scope": scope,
                # The whole ledger's extent, for the range selector.
                "first": versions[0].version if versions else 0,
                "head": versions[-1].version if versions else 0,
                "count": len(versions),
                # Every version's number and time (ms), oldest first: what the range selector spans.
                "all": [[v.version, v.time_ms] for v in versions],
                "versions": rows,
                "terms": [t for t in terms if after <= t.after_version <= high],
                "pins": [v for v in rows if v["pin"] is not None],
                # The builder's LedgerPin entry: the scope's pin and what it would serve unpinned.
                "pin_status": await status_store.read(self.bus, PIN_STATUS_KIND, f"builder/{scope}", scope),
            }
        )

    async def _with_triggers(self, picked: list[VersionSummary]) -> list[dict[str, Any]]:
        gate = asyncio.Semaphore(_TRIGGER_CONCURRENCY)

        async def row(summary: VersionSummary) -> dict[str, Any]:
            async with gate:
                triggers = await self.triggers.of(summary.first_seq, summary.last_seq)
            out: dict[str, Any] = msgspec.to_builtins(summary)
            out["triggers"] = msgspec.to_builtins(triggers)
            return out

        return list(await asyncio.gather(*(row(s) for s in picked)))

    async def version(self, request: web.Request) -> web.Response:
        scope = request.match_info["scope"]
        number = _int(request, "version")
        summary = await self.ledger.version(scope, number)
        if summary is None:
            raise reader.VersionNotFound(f"version {number} is not in the ledger of scope {scope!r}")
        entry = await reader.find(self.bus, scope, number)
        changes = await reader.changes_of(self.bus, entry.record)
        triggers = await self.triggers.of(summary.first_seq, summary.last_seq)
        return _json(
            {
                **msgspec.to_builtins(summary),
                "triggers": msgspec.to_builtins(triggers),
                "changed_resources": [
                    {
                        "type_url": ref.type_url,
                        "type": short_type(ref.type_url),
                        "name": ref.name,
                        "sha256": ref.sha256,
                        "size": ref.size,
                    }
                    for ref in sorted(changes.changed, key=lambda r: (r.type_url, r.name))
                ],
                "removed_resources": [
                    {"type_url": ref.type_url, "type": short_type(ref.type_url), "name": ref.name}
                    for ref in sorted(changes.removed, key=lambda r: (r.type_url, r.name))
                ],
            }
        )

    async def diff(self, request: web.Request) -> web.Response:
        scope = request.match_info["scope"]
        return _json(await diff_versions(self.bus, scope, _int(request, "a"), _int(request, "b")))

    async def objects(self, request: web.Request) -> web.Response:
        rows = await objects.objects(self.bus, request.query.get("q", ""), request.query.get("state", ""))
        return _json({"objects": rows})

    async def history(self, request: web.Request) -> web.Response:
        kind, key = request.query.get("kind", ""), request.query.get("key", "")
        if not kind or not key:
            raise ApiError(400, "kind and key are required")
        versions = await self.ledger.versions(request.match_info["scope"])
        return _json(await object_history.history(self.bus, kind, key, versions))

    async def sources(self, _request: web.Request) -> web.Response:
        builders = []
        for scope in await self.ledger.scopes():
            terms = await self.ledger.terms(scope)
            if terms:
                builders.append(terms[-1])
        return _json(
            {
                "leases": await sources.leases(self.bus),
                "watchers": await sources.watchers(self.bus),
                "registries": await sources.registries(self.bus),
                "builders": builders,
            }
        )

    async def proxies(self, _request: web.Request) -> web.Response:
        return _json({"available": True, "proxies": await proxies.proxies(self.bus, await self._heads())})

    async def live(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", **_SECURITY_HEADERS}
        )
        await response.prepare(request)
        await response.write(b"retry: 1000\n\n")
        idle = 0.0
        with self.feed.listen() as queue:
            # Woken every second to notice the console stopping.
            while not self.stop.is_set():
                try:
                    notice = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    idle += 1.0
                    if idle >= _KEEPALIVE:
                        await response.write(b": keepalive\n\n")
                        idle = 0.0
                    continue
                idle = 0.0
                await response.write(b"event: ledger\ndata: " + msgspec.json.encode(notice) + b"\n\n")
        return response


async def serve(console: Console, host: str, port: int) -> None:
    """Serve the console on host:port, following the ledger, until `console.stop` is set."""
    runner = web.AppRunner(console.app(), access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("console on http://%s:%d/", host, port)
    feed = asyncio.create_task(console.feed.run(console.stop))
    try:
        await console.stop.wait()
    finally:
        feed.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await feed
        await runner.cleanup()
