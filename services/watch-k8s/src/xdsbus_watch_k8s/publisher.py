"""Per kind: the objects its feeds hold, what has been published, and the difference between the two.

A kind's first resync waits until every feed of the kind has listed once, so a restart never publishes a
key list missing what a slower feed holds (the builder would drop those objects until the feed caught
up). Later relists of one feed resync the whole kind: that feed's fresh list plus what the other feeds
hold now. A list's objects need not wait for that resync: each page's objects are published as the page
arrives (`publish_listed`: an upsert is a fact whenever it is sent), and the resync adds the sync_end
that names every key, which is what drops the objects no feed holds any more.

Publishing is skipped when a key's normalized body has the digest last published for it: a status write,
a no-op update or a relist of unchanged objects sends nothing. The digest is the event's `rev`, a
content hash, so what another replica or a restart publishes again is ignored by the fold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from xdsbus.watcher import Watcher, content_rev

log = logging.getLogger(__name__)

Body = dict[str, Any]


class KindPublisher:
    """The published state of one kind, fed by one or more feeds (numbered from 0)."""

    def __init__(self, watcher: Watcher, kind: str, feeds: int) -> None:
        self.watcher = watcher
        self.kind = kind
        self.synced = asyncio.Event()  # set after the kind's first resync
        # One lock per kind: a resync (sync_begin, upserts, sync_end) never interleaves with other events
        # of the same kind, and the key list of a sync_end is exactly what was published.
        self._lock = asyncio.Lock()
        self._feeds: list[dict[str, Body] | None] = [None] * feeds  # None until the feed has listed
        self._published: dict[str, str] = {}  # key -> rev told to the builder
        # Bodies `publish_listed` sent since the last resync: that resync need not hash them again.
        self._listed_now: dict[str, Body] = {}

    def objects(self) -> dict[str, Body]:
        """Every object the feeds hold, by key."""
        if len(self._feeds) == 1:
            return dict(self._feeds[0] or {})
        merged: dict[str, Body] = {}
        for held in self._feeds:
            if held:
                for key, body in held.items():
                    merged.setdefault(key, body)
        return merged

    def reset(self) -> None:
        """Start over, as at the first list (a new term): wait for every feed to list again, then
        publish every object (what the builder holds may be another replica's)."""
        self._feeds = [None] * len(self._feeds)
        self._published = {}
        self._listed_now = {}
        self.synced.clear()

    def is_published(self, key: str) -> bool:
        """Whether `key` is present for the builder (accepted and published)."""
        return key in self._published

    async def replace(self, feed: int, objects: Mapping[str, Body]) -> None:
        """A feed listed: `objects` is all it holds. Resyncs the kind once every feed has listed."""
        async with self._lock:
            self._feeds[feed] = dict(objects)
            if any(held is None for held in self._feeds):
                return
            await self._resync()
            self.synced.set()

    async def publish_listed(self, objects: Mapping[str, Body]) -> None:
        """Objects of a list still in progress: those whose content differs from what was published go
        out now, so a large list is published while it is still being read; the resync that follows the
        list publishes none of them again, and its sync_end still names every key listed. Pipelined as
        a resync is: returns once every one is stored."""
        async with self._lock, self.watcher.pipelined():
            for key, body in objects.items():
                if await self._upsert_changed(key, body):
                    self._listed_now[key] = body

    async def put(self, feed: int, key: str, body: Body | None) -> None:
        """A feed saw `key` change (`body`) or go away (None)."""
        async with self._lock:
            held = self._feeds[feed]
            if held is None:
                return  # a watch follows its feed's list: nothing arrives before
            if body is None:
                held.pop(key, None)
            else:
                held[key] = body
            if self.synced.is_set():
                await self._publish(key)
            # Before the first resync the change is only recorded: that resync publishes it.

    def get(self, key: str) -> Body | None:
        """The body a feed holds for `key`, if any."""
        for held in self._feeds:
            if held and key in held:
                return held[key]
        return None

    async def _publish(self, key: str) -> None:
        body = self.get(key)
        if body is not None:
            await self._upsert_changed(key, body)
        elif key in self._published:
            if await self.watcher.delete(self.kind, key):
                del self._published[key]

    async def _upsert_changed(self, key: str, body: Body) -> bool:
        """Publish `body` unless it is what was last published for `key`; whether it was published now.
        A refused upsert (reported by the watcher) leaves what was published: tried again next time."""
        rev = content_rev(body)  # the Watcher's default rev, computed once for the digest too
        if self._published.get(key) == rev or not await self.watcher.upsert(self.kind, key, body, rev=rev):
            return False
        self._published[key] = rev
        return True

    async def _resync(self) -> None:
        present = self.objects()
        epoch = await self.watcher.begin_sync([self.kind])
        listed_now, self._listed_now = self._listed_now, {}
        published = self._published
        # After a list whose pages published everything, nothing is left to sort and look at again.
        unsent = [
            key for key, body in present.items() if listed_now.get(key) is not body or key not in published
        ]
        for key in sorted(unsent):
            await self._upsert_changed(key, present[key])
        # Refused objects are listed too: the builder keeps the version it has of them.
        await self.watcher.end_sync(epoch, {self.kind: present})
        # The sync_end makes the builder drop what is not listed; so is it forgotten here.
        if not self._published.keys() <= present.keys():
            self._published = {key: rev for key, rev in self._published.items() if key in present}
        log.info("%s: resync of %s: %d objects", self.watcher.source, self.kind, len(present))
