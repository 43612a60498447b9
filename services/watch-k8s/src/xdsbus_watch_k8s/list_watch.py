"""The list+watch loop of one feed, written directly against the API's JSON protocol.

    list (paged: sink.page per page) ──▶ sink.replace ──▶ watch from the list's resourceVersion
        ▲                                                         │ ──▶ sink.apply per event
        │                                                         │ stream ends (timeoutSeconds): watch
        │                                                         │ again from the last RV
        └──── 410 Expired (in-stream ERROR or HTTP), or the resource vanished ──┘

Every list is a full resync of what the feed holds, so objects deleted while the watcher was away, or
during the gap a 410 leaves, disappear. Each page goes to the sink as it arrives, so the objects of a
large list are published while the rest is still being listed (bench cold_load); only the complete list
(`replace`) says what the feed holds. Bookmarks move the resourceVersion forward without an object,
so a quiet resource resumes from a recent RV instead of running into 410. Any other failure (API server
unreachable, 5xx, a dropped connection) waits with backoff and resumes the watch from the last RV: the
state already published stays, nothing is deleted because the server could not be reached.

Recovery after an API server restart is bounded, not sized by the outage (issue 14): while the server
refuses connections the delay stays under `probe_cap` (a refused connection costs the server nothing), and
a watch answered with 410 relists at once, without the backoff step the outage grew. Only a 410 right
after such a relist, before the new watch delivered anything, backs off (a server that expires every
watch is not hammered).

kubernetes_asyncio's `Watch` is not used: it deserialises into typed models, retries a 410 with the same
RV, and hides bookmarks. This loop reads the stream line by line as JSON data.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any, Protocol

import aiohttp
import msgspec

from xdsbus.backoff import Backoff
from xdsbus.watcher import SourceUnavailable
from xdsbus_watch_k8s.api import ApiError, Gone, KubeApi, NotFound, error_from_status
from xdsbus_watch_k8s.resources import Feed

log = logging.getLogger(__name__)

# Objects per list page: each page costs a request (~0.7 ms of CPU through kubernetes_asyncio and
# aiohttp, bench/cold_load.py), and a page and the next one, fetched while it is published, are in
# memory at once.
DEFAULT_PAGE_SIZE = 1000
DEFAULT_WATCH_TIMEOUT = 300
# Beyond the server's own timeoutSeconds: how long a watch may stay silent before it is presumed dead.
_READ_GRACE = 30.0

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"

# What may go wrong talking to the API server (ValueError covers undecodable JSON); all of it is retried.
_TRANSIENT = (ApiError, aiohttp.ClientError, TimeoutError, OSError, ValueError)
# The server did not take the connection (down, restarting): probed again within `probe_cap`.
_REFUSED = (aiohttp.ClientConnectorError, ConnectionRefusedError)
DEFAULT_PROBE_CAP = 1.0
# A watch that ends sooner than this without a single event counts as a failure, so a server that closes
# every watch at once is not hammered.
_SHORT_WATCH = 1.0


class FeedSink(Protocol):
    """Where a feed's objects go (the raw JSON objects as the API returns them)."""

    async def page(self, feed: Feed, api_version: str, items: list[dict[str, Any]], first: bool) -> None:
        """One page of a list, as it arrives; `first` starts a list (what the pages of a list that did
        not complete held is forgotten)."""

    async def replace(self, feed: Feed, api_version: str) -> None:
        """The list is complete: its pages held everything the feed holds now."""

    async def apply(self, feed: Feed, api_version: str, event_type: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""

    def answered(self) -> None:
        """The API server answered (a list page, a watch event or bookmark), even with nothing new."""


class NotServed(Exception):
    """No version of the resource is served: a CRD that is not installed (yet)."""


class ListWatch:
    """Lists and watches one feed until `stop` is set; never raises for the API's sake."""

    def __init__(
        self,
        api: KubeApi,
        feed: Feed,
        sink: FeedSink,
        stop: asyncio.Event,
        *,
        watch_timeout: int = DEFAULT_WATCH_TIMEOUT,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry_base: float = 0.2,
        retry_cap: float = 30.0,
        probe_cap: float = DEFAULT_PROBE_CAP,
    ) -> None:
        self.api = api
        self.feed = feed
        self.sink = sink
        self.stop = stop
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.probe_cap = probe_cap
        # Set once the first list ended, listed or not: what feeds listed `after` this one wait for.
        self.first_list_ended = asyncio.Event()
        # Feeds whose first list this one's first list waits for (K8sWatcher: routes after backends).
        self.after: list[ListWatch] = []
        self.resource_version: str | None = None  # where the next watch starts; None: list first
        self.version: str = feed.resource.versions[0]  # the API version served, found by the last list
        self.lists = 0  # successful lists, for logs and tests
        self.refused = 0  # refused connections since the server last answered
        self.refusals = 0  # refused connections in all, for tests
        # Set by a relist that skipped the backoff after a 410, cleared once a watch delivers a line.
        self._relisted_at_once = False

    async def run(self) -> None:
        """List, watch, and recover, until stopped."""
        backoff = Backoff(base=self.retry_base, cap=self.retry_cap)
        missing = False
        while not self.stop.is_set():
            try:
                if self.resource_version is None:
                    if not self.first_list_ended.is_set():
                        await self._wait_for_earlier_feeds()
                        if self.stop.is_set():
                            return
                    try:
                        await self._list()
                    finally:
                        self.first_list_ended.set()
                    if missing:
                        log.info("%s: now served (%s); listed", self.feed.name, self.version)
                        missing = False
                    backoff.reset()
                    self.refused = 0
                if await self._watch(backoff):
                    continue
            except Gone as exc:
                log.info("%s: resourceVersion expired (%s); relisting", self.feed.name, exc.message or exc)
                from_watch = self.resource_version is not None
                self.resource_version = None
                if from_watch and not self._relisted_at_once:
                    # The server answered, so it is back: the backoff an outage grew must not delay the
                    # relist that catches up with what changed meanwhile.
                    self._relisted_at_once = True
                    continue
            except NotServed:
                if not missing:
                    # Expected of a CRD that is not installed; a surprise for a built-in kind.
                    level = logging.INFO if self.feed.resource.optional else logging.WARNING
                    log.log(
                        level,
                        "%s: not served by the API server (CRD not installed?); checking again with backoff",
                        self.feed.name,
                    )
                    missing = True
            except NotFound as exc:
                # Served at the list, gone at the watch: the CRD was removed, or is being replaced.
                log.warning("%s: %s; relisting", self.feed.name, exc)
                self.resource_version = None
            except _REFUSED as exc:
                # Logged once per outage: the probes repeat every second or so until the server is back.
                level = logging.DEBUG if self.refused else logging.WARNING
                self.refused += 1
                self.refusals += 1
                log.log(
                    level,
                    "%s: API server unreachable (%s); keeping the last known state",
                    self.feed.name,
                    exc,
                )
                await self._pause(min(backoff.next_delay(), self.probe_cap))
                continue
            except _TRANSIENT as exc:
                log.warning(
                    "%s: %s: %s; keeping the last known state", self.feed.name, type(exc).__name__, exc
                )
            except SourceUnavailable as exc:  # the event log refused an event (stopping, no secret key)
                log.warning("%s: %s", self.feed.name, exc)
            except Exception:
                # A bug in handling one object must not silence the whole feed: log it, retry later.
                log.exception("%s: unexpected failure; keeping the last known state", self.feed.name)
            await self._pause(backoff.next_delay())

    async def _wait_for_earlier_feeds(self) -> None:
        """Until the first list of every feed in `after` ended (listed, failed or not served) or the loop
        is stopped; a failure there delays nothing beyond its own attempt."""
        if not self.after:
            return
        ended: asyncio.Future[Any] = asyncio.gather(*(feed.first_list_ended.wait() for feed in self.after))
        stopped: asyncio.Future[Any] = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait([ended, stopped], return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            stopped.cancel()

    async def _pause(self, delay: float) -> None:
        """Wait `delay` seconds, or until stopped."""
        try:
            await asyncio.wait_for(self.stop.wait(), timeout=delay)
        except TimeoutError:
            pass

    async def _list(self) -> None:
        """List every page of the first served version and hand the objects to the sink."""
        for version in self.feed.resource.versions:
            api_version = self.feed.resource.api_version(version)
            try:
                count, resource_version = await self._list_version(version, api_version)
            except NotFound:
                continue
            self.version = version
            await self.sink.replace(self.feed, api_version)
            self.resource_version = resource_version
            self.lists += 1
            log.debug("%s: listed %d objects at %s", self.feed.name, count, resource_version)
            return
        raise NotServed(self.feed.name)

    async def _list_version(self, version: str, api_version: str) -> tuple[int, str]:
        """Hand every page of the list to the sink; the number of objects and the list's RV."""
        path = self.feed.resource.collection_path(version, self.feed.namespace)
        params = [("limit", str(self.page_size)), *self._selector()]
        count = 0
        first = True
        # An expired continue token is a 410 too: the caller relists from the start.
        page = await self.api.get(path, params)
        while True:
            self.sink.answered()
            metadata = page.get("metadata") or {}
            token = str(metadata.get("continue") or "")
            # The next page is asked for while the sink publishes this one.
            following = None
            if token:
                following = asyncio.ensure_future(self.api.get(path, [*params, ("continue", token)]))
            try:
                items = [item for item in page.get("items") or () if isinstance(item, dict)]
                await self.sink.page(self.feed, api_version, items, first=first)
                count += len(items)
                if following is None:
                    return count, str(metadata.get("resourceVersion") or "")
                page = await following
            finally:
                if following is not None:
                    if not following.done():
                        following.cancel()
                    elif not following.cancelled():
                        following.exception()  # retrieved: the sink's failure is the one raised
            first = False

    async def _watch(self, backoff: Backoff) -> bool:
        """One watch request from `resource_version`, until the server ends it (timeoutSeconds).

        Returns False when it ended at once without an event (the caller backs off before the next)."""
        assert self.resource_version is not None
        path = self.feed.resource.collection_path(self.version, self.feed.namespace)
        params = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(self.watch_timeout)),
            *self._selector(),
        ]
        if self.resource_version:
            params.append(("resourceVersion", self.resource_version))
        api_version = self.feed.resource.api_version(self.version)
        started = time.monotonic()
        async with self.api.stream(path, params, read_timeout=self.watch_timeout + _READ_GRACE) as body:
            self.sink.answered()
            lines = 0
            while True:
                line = await body.readline()
                if not line:
                    return lines > 0 or time.monotonic() - started >= _SHORT_WATCH
                if line.strip():
                    await self._handle(api_version, line)
                    if not lines:
                        backoff.reset()  # the stream works
                        self._relisted_at_once = False
                        self.refused = 0
                    lines += 1

    async def _handle(self, api_version: str, line: bytes) -> None:
        event = msgspec.json.decode(line)
        if not isinstance(event, dict):
            raise ValueError(f"watch frame is not an object: {line[:100]!r}")
        event_type = event.get("type")
        obj = event.get("object")
        if event_type == ERROR or (event_type is None and "code" in event):
            status = obj if isinstance(obj, Mapping) else event
            raise error_from_status(int(status.get("code") or 500), status)
        if not isinstance(obj, dict):
            raise ValueError(f"watch frame without an object: {line[:100]!r}")
        self.sink.answered()
        if event_type in (ADDED, MODIFIED, DELETED):
            await self.sink.apply(self.feed, api_version, event_type, obj)
        elif event_type != BOOKMARK:
            log.debug("%s: ignoring watch event type %r", self.feed.name, event_type)
            return
        # Only once the event is handled: a failure before this point resumes at, and repeats, the event.
        metadata = obj.get("metadata") or {}
        if rv := metadata.get("resourceVersion"):
            self.resource_version = str(rv)

    def _selector(self) -> list[tuple[str, str]]:
        return [("fieldSelector", self.feed.field_selector)] if self.feed.field_selector else []
