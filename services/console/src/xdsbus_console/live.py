"""Live updates: every record published on the ledger (`xdsbus.ledger.>`, a version or a term record),
as it arrives, handed to each open browser page (server-sent events, `app.py`).

Read through an ordered JetStream consumer that starts at new records, so it works with the reader's
credentials (docs/design.md §10), which allow no plain subscription outside the reader's inboxes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import msgspec
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api

from xdsbus.backoff import Backoff
from xdsbus.bus import LEDGER_SUBJECT_PREFIX, Bus
from xdsbus.ledger import reader
from xdsbus.proto.ledger.v1 import ledger_pb2

log = logging.getLogger(__name__)

# Notices a slow page may fall behind by; past that it gets a `resync` and reloads what it shows.
QUEUE_SIZE = 256


class Notice(msgspec.Struct, frozen=True, kw_only=True):
    """A ledger record as a page is told of it: `kind` is `version`, `term`, or `resync` (notices were
    lost: reload)."""

    kind: str
    scope: str = ""
    version: int = 0
    term: int = 0


def notice_of(subject: str, data: bytes) -> Notice:
    """The notice for one ledger message."""
    record = ledger_pb2.Version()
    record.ParseFromString(data)
    scope = subject.removeprefix(f"{LEDGER_SUBJECT_PREFIX}.")
    if reader.is_term(record):
        return Notice(kind="term", scope=scope, term=record.term.term, version=record.term.head_version)
    return Notice(kind="version", scope=scope, version=record.version)


class LedgerFeed:
    """Follows the ledger and fans each record out to the pages listening."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._listeners: set[asyncio.Queue[Notice]] = set()

    @contextlib.contextmanager
    def listen(self) -> Iterator[asyncio.Queue[Notice]]:
        """A queue of notices, open for the `with` block."""
        queue: asyncio.Queue[Notice] = asyncio.Queue(QUEUE_SIZE)
        self._listeners.add(queue)
        try:
            yield queue
        finally:
            self._listeners.discard(queue)

    def publish(self, notice: Notice) -> None:
        """Hand a notice to every listener; a full queue is emptied and told to resync."""
        for queue in self._listeners:
            if queue.full():
                while not queue.empty():
                    queue.get_nowait()
                queue.put_nowait(Notice(kind="resync"))
            else:
                queue.put_nowait(notice)

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the ledger until `stop`, subscribing again after a fault."""
        backoff = Backoff(base=0.2, cap=5.0)
        while not stop.is_set():
            try:
                await self._follow(stop)
                backoff.reset()
            except (NatsError, OSError) as exc:
                log.warning("following the ledger: %s; subscribing again", exc)
                self.publish(Notice(kind="resync"))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.next_delay())

    async def _follow(self, stop: asyncio.Event) -> None:
        sub = await self.bus.js.subscribe(
            f"{LEDGER_SUBJECT_PREFIX}.>", ordered_consumer=True, deliver_policy=api.DeliverPolicy.NEW
        )
        try:
            while not stop.is_set():
                try:
                    msg = await sub.next_msg(timeout=1.0)
                except (TimeoutError, NatsTimeoutError):
                    continue
                try:
                    self.publish(notice_of(msg.subject, msg.data))
                except Exception as exc:  # a record this console cannot parse must not stop the feed
                    log.warning("ledger record on %s not understood: %s", msg.subject, exc)
        finally:
            with contextlib.suppress(NatsError):
                await sub.unsubscribe()
