"""The base of every watcher: publishing with attempt ids, resync epochs, reconnects with backoff.

A subclass implements `watch()`: it lists its source, calls `resync()` with everything present, then
streams changes through `upsert()` and `delete()` until the source fails, when it raises. The base class
backs off and calls `watch()` again. Nothing is ever deleted because the source is unreachable: only an
explicit deletion from the source, or a completed resync that no longer lists a key, removes anything.

One publisher per source (docs/design.md §4): `run()` calls `watch()` only while it holds the source
lease `watch.<source_type>.<source_name>` in KV xdsbus_leases, under an identity stable per pod (a
restarted process takes its own lease back at once). The lease revision at acquisition is the term that
every event carries; the fold drops events of an older term than it has seen for the source. Each term
starts with a fresh `watch()`, so with a full resync. When a renewal is refused the watcher stops
publishing at once (`LeaseLost`), cancels `watch()` and stands by. A watcher driven without `run()` (the
registry sinks hold the lease themselves with `lead()`; tests and benchmarks publish directly) publishes
with the term it last acquired, 0 when it never held the lease.

A body too large for a message goes to the Object Store and the event carries its reference (claim
check, docs/design.md §4). A publish that fails for one object (a body over MAX_BODY_BYTES, a payload or
request the server refuses) is isolated to that object: reported in KV xdsbus_status and logged, and the
feed goes on; the object keeps its last published version, and its key stays in the resync's key list.
Only failures of the bus itself (timeouts, no connection, a full log) are retried, with the same id.

Publishing is pipelined (xdsbus.publish_window) during a resync (from `begin_sync()` to `end_sync()`)
and inside `pipelined()`: there `upsert()` and `delete()` return once the event is sent, up to
`publish_window` events await their acknowledgement, in order, and never two of one key; a refusal the
server answers later is reported (status, log, counter) when its acknowledgement is read, and the call
that sent it had returned True. sync_begin and sync_end wait until everything sent before them is
stored, and so does leaving `pipelined()`. Elsewhere each publish returns once it is stored, as a
single change wants.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

import msgspec
from nats.errors import ConnectionClosedError, ConnectionReconnectingError, NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, BadRequestError, NoStreamResponseError

from xdsbus import status_store, watcher_report
from xdsbus.backoff import Backoff
from xdsbus.bus import Bus
from xdsbus.cancelling import cancel_until_done
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.events import (
    CLAIM_CHECK_BYTES,
    MAX_BODY_BYTES,
    PROCESS_ATTEMPTS,
    SYNC_END_CHUNK,
    AttemptIds,
    BodyRef,
    Event,
    Op,
    SyncEnd,
    encode,
    encode_body,
    subject_for,
)
from xdsbus.health import REGISTRY, Series
from xdsbus.jetstream_acks import AckedPublisher
from xdsbus.lease import Lease, pod_identity, source_lease_name
from xdsbus.objects import store_claimed
from xdsbus.publish_window import DEFAULT_ACK_TIMEOUT, DEFAULT_WINDOW, Publish, PublishWindow
from xdsbus.secretbox import SecretBox
from xdsbus.transient import is_transient

log = logging.getLogger(__name__)

T = TypeVar("T")

# Failures of the bus, not of the event: retried until they pass (or the watcher stops).
_PUBLISH_ERRORS = (
    NatsTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ConnectionClosedError,
    APIError,
)
# err_code of "maximum bytes exceeded": the event log is at its size cap (docs/design.md §4), so every
# publish is refused until the builder purges below a new checkpoint or the cap is raised.
_LOG_FULL = 10077
# Room left in a message for its headers (Nats-Msg-Id holds the key) next to the envelope.
HEADER_ROOM = 8 * 1024


# The watchers of this process, for the figures of /metrics (xdsbus.health, docs/design.md §9).
_WATCHERS: weakref.WeakSet[Watcher] = weakref.WeakSet()
_PUBLISHED = REGISTRY.counter(
    "xdsbus_watcher_events_published",
    "Events published to the event log, by source and kind.",
    ["source", "kind"],
)
_REFUSED = REGISTRY.counter(
    "xdsbus_watcher_events_refused",
    "Upserts and deletes not published (too large, refused by the server), by source and kind.",
    ["source", "kind"],
)


def _leading_figure(figure: Callable[[Watcher, float], float | None]) -> Callable[[], Series]:
    def read() -> Series:
        now = time.monotonic()
        values = {(w.source,): figure(w, now) for w in list(_WATCHERS) if w.leading}
        return {k: v for k, v in values.items() if v is not None}

    return read


REGISTRY.gauge(
    "xdsbus_watcher_source_lag_seconds",
    "Seconds since the source last answered (a list, a watch event, a poll), while publishing.",
    ["source"],
    read=_leading_figure(lambda w, now: now - w.source_seen_at),
)
REGISTRY.gauge(
    "xdsbus_watcher_resync_age_seconds",
    "Seconds since the last completed resync (a full list), while publishing.",
    ["source"],
    read=_leading_figure(lambda w, now: None if w.resynced_at is None else now - w.resynced_at),
)
REGISTRY.gauge(
    "xdsbus_watcher_lease_holder",
    "1 while this process holds the source lease and publishes, 0 while it stands by.",
    ["source"],
    read=lambda: {(w.source,): float(w.leading) for w in list(_WATCHERS)},
)
REGISTRY.gauge(
    "xdsbus_watcher_lease_term",
    "The term (lease revision) this process last published under, 0 before it first led.",
    ["source"],
    read=lambda: {(w.source,): float(w.term) for w in list(_WATCHERS)},
)


class EventRefused(Exception):
    """This one event cannot be published (too large, refused by the server); others still can."""


# The canonical encoding of a body: msgpack with every map's keys sorted.
_encode_sorted = msgspec.msgpack.Encoder(order="sorted").encode


def content_rev(body: Any) -> str:
    """A revision for sources that have none: a hash of the canonical encoding of the body."""
    return hashlib.sha256(_encode_sorted(body)).hexdigest()[:20]


class SourceUnavailable(Exception):
    """The source cannot be reached or read right now; last known state stays."""


class LeaseLost(SourceUnavailable):
    """The source lease is no longer this watcher's: it publishes nothing until it leads again."""


class Watcher(abc.ABC):
    """Publishes one source's facts to the event log."""

    source: str
    term: int
    leading: bool
    source_seen_at: float
    resynced_at: float | None

    def __init__(
        self,
        bus: Bus,
        source: str,
        *,
        secret_box: SecretBox | None = None,
        stop: asyncio.Event | None = None,
        attempt_ids: AttemptIds = PROCESS_ATTEMPTS,
        instance_id: str | None = None,
        lease_ttl: float | None = None,
        publish_window: int = DEFAULT_WINDOW,
        publish_timeout: float = DEFAULT_ACK_TIMEOUT,
    ) -> None:
        if "/" not in source:
            raise ValueError(f"source {source!r} must be '<type>/<name>'")
        self.bus = bus
        self.source = source
        self.secret_box = secret_box
        self.stop = stop or asyncio.Event()
        self.instance_id = instance_id or pod_identity()
        self._lease_ttl = lease_ttl
        self._lease: Lease | None = None
        # The revision of the lease when this watcher last acquired it; 0 until then.
        self.term = 0
        self._epoch = 0
        self._attempt_ids = attempt_ids
        # (kind, key) of objects whose last publish was refused: their status entry is ours to clear.
        self._refused: set[tuple[str, str]] = set()
        self._window = PublishWindow(self, publish_window, publish_timeout)
        self._acks: AckedPublisher | None = None  # made at the first publish
        self._subjects: dict[str, str] = {}  # the event log's subject of each kind published
        # A sync_begin or sync_end the server refused: the resync fails (raised by the next flush).
        self._sync_refusal: EventRefused | None = None
        # Resync epochs begun and not ended, and open `pipelined()` blocks: publishes return once sent.
        self._open_syncs: set[int] = set()
        self._pipelined = 0
        # Figures of /metrics: whether this watcher publishes now, when the source last answered and when
        # the last resync completed (monotonic seconds).
        self.leading = False
        self.source_seen_at = time.monotonic()
        self.resynced_at = None
        # What its status entry reports besides (xdsbus.watcher_report); wall-clock seconds.
        self.leading_since = 0.0
        self.resyncs = 0
        self.events_published = 0
        self.last_error = ""
        self.last_error_at = 0.0
        # The source failed and has not answered since.
        self.failing = False
        self._report_now = asyncio.Event()
        self._reporter: asyncio.Task[None] | None = None
        _WATCHERS.add(self)

    @abc.abstractmethod
    async def watch(self) -> None:
        """List, resync and follow the source until it fails (raise) or `self.stop` is set (return)."""

    @property
    def lease(self) -> Lease:
        """The source lease `watch.<source_type>.<source_name>`, made when first needed."""
        if self._lease is None:
            # The bucket's TTL expires the lease; `lease_ttl` only paces the renewals (a third of it).
            ttl = self._lease_ttl or self.bus.settings.lease_ttl
            self._lease = Lease(
                self.bus,
                source_lease_name(self.source),
                self.instance_id,
                ttl,
                reclaim=True,
                bucket_pace=True,
            )
        return self._lease

    async def run(self) -> None:
        """Hold the source lease and run `watch()` while holding it, standing by whenever it is lost;
        until stopped. The lease is given back on stop, so a standby takes over at once."""
        while not self.stop.is_set():
            if not await self.lead():
                return
            try:
                await self._watch_while_leading()
                await self._finish_publishing()
            finally:
                self._window.abort()
                await self.release()
            if not self.stop.is_set():
                log.warning("%s: lost the lease %s; standing by", self.source, self.lease.name)

    async def lead(self, stop: asyncio.Event | None = None) -> bool:
        """Wait until this watcher holds its source lease (True) or `stop` (default: the watcher's) is set
        (False). A new term begins: `new_term()` forgets what an earlier term published."""
        log.info("%s: waiting for the lease %s as %s", self.source, self.lease.name, self.instance_id)
        if not await self.lease.acquire(stop or self.stop):
            return False
        self.term = self.lease.term
        self._window.reset()
        self._open_syncs.clear()
        self.leading = True
        self.source_seen_at = time.monotonic()
        self.leading_since = round(time.time(), 3)
        self.resyncs = self.events_published = 0
        self.new_term()
        self._reporter = asyncio.get_running_loop().create_task(
            watcher_report.keep_reporting(self, self._report_every(), self._report_now),
            name=f"report {self.source}",
        )
        log.info(
            "%s: publishing as %s, term %d (lease %s)",
            self.source,
            self.instance_id,
            self.term,
            self.lease.name,
            extra={"term": self.term},
        )
        return True

    async def release(self) -> None:
        """Give the source lease back (nothing when it was lost), so a standby takes over at once.
        Publishing stops: nothing more is sent, and the acknowledgements' subscription ends (a watcher
        dropped after standing down leaves none behind; leading again makes a new one)."""
        self.leading = False
        self._window.abort()
        if self._reporter is not None:
            reporter, self._reporter = self._reporter, None
            await cancel_until_done(reporter)
            if not self.lease.lost.is_set():
                # Stopping (not superseded): nobody publishes the source until another replica leads.
                await watcher_report.write(self, self._report_every(), leading=False)
        if self._acks is not None:
            acks, self._acks = self._acks, None
            with contextlib.suppress(Exception):  # a closed connection has no subscription left
                await acks.close()
        await self.lease.release()

    def _report_every(self) -> float:
        """Seconds between reports: the lease's renewal pace."""
        return self.lease.ttl / 3

    def new_term(self) -> None:  # noqa: B027 (a hook: most watchers remember nothing across terms)
        """Called when this watcher takes the lease. A subclass that skips publishing what it published
        before forgets it here: another holder may have published since, so the term's first resync
        publishes everything (the fold ignores what it holds already)."""

    async def _watch_while_leading(self) -> None:
        """`watch()` with backoff after failures, until stop or the loss of the lease."""
        backoff = Backoff()
        while not (self.stop.is_set() or self.lease.lost.is_set()):
            try:
                finished = await self._until_lost(self.watch())
                if not finished:
                    return
                backoff.reset()
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                return
            except Exception as exc:
                self._open_syncs.clear()  # the next watch() resyncs afresh
                self.last_error, self.last_error_at = str(exc) or type(exc).__name__, round(time.time(), 3)
                self.failing = True
                self._report_now.set()
                delay = backoff.next_delay()
                log.warning(
                    "%s: source failed (%s); keeping last known state, retrying in %.1fs",
                    self.source,
                    exc,
                    delay,
                )
                await self._until_lost(asyncio.wait_for(self.stop.wait(), timeout=delay), quiet=True)

    async def _until_lost(self, work: Coroutine[Any, Any, Any], *, quiet: bool = False) -> bool:
        """Run `work` unless the lease is lost first (then it is cancelled: False). `quiet` swallows
        the TimeoutError of a wait."""
        task = asyncio.ensure_future(work)
        losing = asyncio.ensure_future(self.lease.lost.wait())
        try:
            await asyncio.wait({task, losing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            losing.cancel()
            await cancel_until_done(task)
        if task.cancelled():
            return False
        if quiet and isinstance(task.exception(), TimeoutError):
            return True
        task.result()
        return True

    async def _finish_publishing(self) -> None:
        """On a stop, let what was sent be acknowledged (briefly); after a lost lease, nothing."""
        if self.lease.lost.is_set():
            return
        try:
            await asyncio.wait_for(self.flush(), timeout=self.lease.ttl / 3)
        except (TimeoutError, SourceUnavailable) as exc:
            log.warning("%s: stopped with %d events unacknowledged (%s)", self.source, len(self._window), exc)

    @contextlib.asynccontextmanager
    async def pipelined(self) -> AsyncIterator[None]:
        """Within the block, publishes return once sent (pipelined); leaving it waits until every one
        is stored. For a burst of changes (many files, a watch backlog)."""
        self._pipelined += 1
        try:
            yield
        finally:
            self._pipelined -= 1
        await self.flush()

    async def flush(self) -> None:
        """Until every event sent so far is stored (or refused and reported). Raises LeaseLost or
        SourceUnavailable when publishing stopped with events unstored."""
        await self._window.flush()
        if self._sync_refusal is not None:
            refusal, self._sync_refusal = self._sync_refusal, None
            raise refusal

    def source_seen(self) -> None:
        """Record that the source answered (a list, a poll, a watch event, even one that changed
        nothing): the source lag of /metrics counts from here. Every published change counts already."""
        self.source_seen_at = time.monotonic()
        if self.failing:
            self.failing = False
            self._report_now.set()

    def _pipelining(self) -> bool:
        return bool(self._open_syncs or self._pipelined)

    def new_epoch(self) -> int:
        """A fresh resync epoch: increasing within this process and across restarts."""
        self._epoch = max(self._epoch + 1, time.time_ns())
        return self._epoch

    async def upsert(self, kind: str, key: str, body: Any, rev: str | None = None) -> bool:
        """Publish that `kind/key` now has `body` (rev defaults to a content hash of the plain body).

        Secret bodies are sealed with the keyring's newest key before they leave the process; the key id
        goes in the envelope and in the rev (`<rev>@<kid>`), so a body sealed under another key is a new
        revision (docs/design.md §4). Returns False when this object was refused (reported, not
        published: its last published version stays)."""
        rev = rev or content_rev(body)
        kid = ""
        if kind == "Secret":
            if self.secret_box is None:
                raise SourceUnavailable(f"{self.source}: Secret {key} seen but no secret key is configured")
            body = self.secret_box.seal(body, source=self.source, kind=kind, key=key)
            kid = self.secret_box.kid
            rev = f"{rev}@{kid}"
        event = Event(
            source=self.source,
            kind=kind,
            key=key,
            op=Op.UPSERT,
            rev=rev,
            epoch=self._epoch,
            term=self.term,
            at=time.time_ns(),
            body=body,
            kid=kid,
        )
        return await self._publish_object(event)

    async def delete(self, kind: str, key: str, rev: str = "") -> bool:
        """Publish that `kind/key` no longer exists at the source; False when it was refused."""
        event = Event(
            source=self.source,
            kind=kind,
            key=key,
            op=Op.DELETE,
            rev=rev,
            epoch=self._epoch,
            term=self.term,
            at=time.time_ns(),
        )
        return await self._publish_object(event)

    async def begin_sync(self, kinds: Iterable[str]) -> int:
        """Start a resync epoch for these kinds; returns the epoch. Everything sent before is stored
        before the sync_begin, and the sync_begin before anything after."""
        epoch = self.new_epoch()
        self._open_syncs.add(epoch)
        for kind in sorted(set(kinds)):
            event = Event(
                source=self.source,
                kind=kind,
                op=Op.SYNC_BEGIN,
                epoch=epoch,
                term=self.term,
                at=time.time_ns(),
            )
            await self._publish(event)
        await self.flush()
        self.source_seen()
        return epoch

    async def end_sync(self, epoch: int, keys_by_kind: Mapping[str, Iterable[str]]) -> None:
        """Close a resync: for each kind, every key present. Keys not listed are dropped by the builder.
        Returns once every event of the resync, its sync_end included, is stored."""
        for kind in sorted(keys_by_kind):
            keys = sorted(set(keys_by_kind[kind]))
            chunks = [keys[i : i + SYNC_END_CHUNK] for i in range(0, len(keys), SYNC_END_CHUNK)] or [[]]
            for part, chunk in enumerate(chunks):
                body = SyncEnd(keys=chunk, part=part, parts=len(chunks))
                event = Event(
                    source=self.source,
                    kind=kind,
                    op=Op.SYNC_END,
                    epoch=epoch,
                    term=self.term,
                    at=time.time_ns(),
                    body=body,
                )
                await self._publish(event)
        await self.flush()
        self._open_syncs.discard(epoch)
        self.source_seen()
        self.resynced_at = time.monotonic()
        self.resyncs += 1
        self._report_now.set()

    async def resync(self, objects: Mapping[str, Mapping[str, Any]], kinds: Iterable[str] = ()) -> None:
        """A whole resync in one call: `objects[kind][key] = body`; `kinds` adds kinds with no objects."""
        all_kinds = set(objects) | set(kinds)
        epoch = await self.begin_sync(all_kinds)
        for kind in sorted(objects):
            for key in sorted(objects[kind]):
                await self.upsert(kind, key, objects[kind][key])
        await self.end_sync(epoch, {kind: objects.get(kind, {}).keys() for kind in all_kinds})

    async def _publish_object(self, event: Event) -> bool:
        """Send an upsert or delete; a refusal is reported and isolated to this object (False)."""
        try:
            publish = await self._publish(event)
        except EventRefused as exc:
            await self._report_refusal(event, exc)
            return False
        self.source_seen()
        if self._pipelining():
            return True
        await self.flush()
        return not publish.refused

    async def _report_refusal(self, event: Event, exc: BaseException) -> None:
        reason = f"{event.op.value} not published: {exc}; the last published version stays"
        log.error("%s: %s %s: %s", self.source, event.kind, event.key, reason)
        status = ObjectStatus(
            kind=event.kind, source=self.source, key=event.key, state=Verdict.REJECTED, reason=reason
        )
        await self._write_status(status_store.put(self.bus, status))
        self._refused.add((event.kind, event.key))
        _REFUSED.inc(self.source, event.kind)

    async def _write_status(self, write: Coroutine[Any, Any, None]) -> None:
        # A report that cannot be written must not stop the feed: the log line stays.
        try:
            await write
        except Exception as exc:
            log.warning("%s: cannot write status (%s)", self.source, exc)

    def _inline_limit(self) -> int:
        """The largest envelope sent as it is: CLAIM_CHECK_BYTES, or less when the server says so."""
        return min(CLAIM_CHECK_BYTES, self.bus.nc.max_payload) - HEADER_ROOM

    async def _claim_check(self, event: Event) -> Event:
        """`event` with its body moved to the Object Store when the envelope is too large to send."""
        data = encode_body(event.body)
        if len(data) > MAX_BODY_BYTES:
            raise EventRefused(f"its body is {len(data)} bytes, over the cap of {MAX_BODY_BYTES} bytes")
        sha256 = await self._retrying(event, lambda: store_claimed(self.bus.event_bodies, data))
        return msgspec.structs.replace(event, body=None, body_ref=BodyRef(sha256=sha256, size=len(data)))

    async def _publish(self, event: Event) -> Publish:
        """Send `event` into the publish window; its acknowledgement is awaited there, in order, and it
        is sent again until JetStream stores it. The attempt id is taken once, before the first try, so
        JetStream stores the retries of this attempt once; no other publish ever reuses it.

        Raises EventRefused when this event cannot be sent at all, and LeaseLost once the source lease
        is lost: a former holder stops publishing at once."""
        self._check_lease()
        key: tuple[str, str] | None = None
        if event.key:
            # Its id is taken when its turn comes, so that ids follow the order of the log per key.
            key = (event.kind, event.key)
            if self._window.holds(key):
                await self._window.wait_for_key(key)
        else:
            # sync_begin and sync_end are stored after everything sent before them.
            await self._window.flush()
        message_id = self._attempt_ids.next(event)
        payload = encode(event)
        if len(payload) > self._inline_limit() and event.body is not None:
            event = await self._claim_check(event)
            payload = encode(event)
        subject = self._subjects.get(event.kind)
        if subject is None:
            subject = self._subjects[event.kind] = subject_for(self.source, event.kind)
        publish = Publish(event, subject, payload, message_id, key)
        if not self._window.submit_now(publish, self._check_lease):
            await self._window.submit(publish, self._check_lease)
        return publish

    # -- the publish window's owner (xdsbus.publish_window.WindowOwner) --------------------------

    def publish_now(self, publish: Publish) -> asyncio.Future[Any] | None:
        """Send `publish` into the connection's buffer when it can be (xdsbus.buffered_publish)."""
        if self._acks is None:
            return None
        return self._acks.publish_now(
            publish.subject, publish.payload, headers={"Nats-Msg-Id": publish.message_id}
        )

    async def publish_attempt(self, publish: Publish) -> asyncio.Future[Any]:
        """Send `publish` once; the future of its acknowledgement (xdsbus.jetstream_acks)."""
        if not self.bus.nc.is_connected:
            # nats-py would hold it until it reconnects, or refuse it when its buffer is full; the
            # window sends it again after a pause instead.
            raise ConnectionReconnectingError
        if self._acks is None:
            self._acks = AckedPublisher(self.bus.nc)
        return await self._acks.publish(
            publish.subject, publish.payload, headers={"Nats-Msg-Id": publish.message_id}
        )

    def publish_retryable(self, exc: BaseException) -> bool:
        """The bus's faults are retried; a 400 (a message over the server's limit) repeats itself."""
        return not isinstance(exc, BadRequestError) and (
            isinstance(exc, _PUBLISH_ERRORS) or is_transient(exc)
        )

    def publish_may_retry(self, publish: Publish, exc: BaseException, delay: float) -> None:
        """Before a resend: stop once the lease is lost or the watcher stops; log the fault."""
        event = publish.event
        self._check_lease()
        if self.stop.is_set():
            raise SourceUnavailable(f"stopping with {event.kind} {event.key or event.op.value} unpublished")
        full = isinstance(exc, APIError) and exc.err_code == _LOG_FULL
        log.log(
            logging.ERROR if full else logging.WARNING,
            "%s: publish of %s %s failed (%s)%s; sending again in %.1fs",
            self.source,
            event.kind,
            event.key or event.op.value,
            exc or type(exc).__name__,
            ": the event log is full, no event is stored until it has room" if full else "",
            delay,
        )

    def publish_stored(self, publish: Publish) -> Awaitable[None] | None:
        """Counted; a refusal reported earlier for the object is cleared (the status write returned)."""
        event = publish.event
        _PUBLISHED.inc(self.source, event.kind)
        self.events_published += 1
        if event.key and self._refused:
            ref = (event.kind, event.key)
            if ref in self._refused:
                self._refused.discard(ref)
                return self._write_status(status_store.delete(self.bus, event.kind, self.source, event.key))
        return None

    async def publish_refused(self, publish: Publish, exc: BaseException) -> None:
        """The server refused `publish`: reported like a refusal before sending."""
        publish.refused = True
        if isinstance(exc, BadRequestError):
            reason = EventRefused(f"the server refused it ({exc})")
        else:
            reason = EventRefused(f"{type(exc).__name__}: {exc}")
        if publish.event.key:
            await self._report_refusal(publish.event, reason)
        else:
            self._sync_refusal = reason
            log.error(
                "%s: %s of %s not published: %s",
                self.source,
                publish.event.op.value,
                publish.event.kind,
                reason,
            )

    def _check_lease(self) -> None:
        if self._lease is not None and self._lease.lost.is_set():
            raise LeaseLost(f"{self.source}: lease {self.lease.name} lost (term {self.term})")

    async def _retrying(self, event: Event, attempt: Callable[[], Awaitable[T]]) -> T:
        """`attempt()` until it passes, retrying the bus's failures; others refuse this event."""
        backoff = Backoff(base=0.1, cap=5.0)
        while True:
            try:
                return await attempt()
            except BadRequestError as exc:
                # 400: the server refuses this request (a message over its limit): retrying repeats it.
                raise EventRefused(f"the server refused it ({exc})") from exc
            except _PUBLISH_ERRORS as exc:
                self._check_lease()
                if self.stop.is_set():
                    raise SourceUnavailable(f"stopping with {event.kind} {event.key} unpublished") from exc
                delay = backoff.next_delay()
                full = isinstance(exc, APIError) and exc.err_code == _LOG_FULL
                log.log(
                    logging.ERROR if full else logging.WARNING,
                    "%s: publish of %s %s failed (%s)%s; retrying in %.1fs",
                    self.source,
                    event.kind,
                    event.key,
                    exc,
                    ": the event log is full, no event is stored until it has room" if full else "",
                    delay,
                )
                await asyncio.sleep(delay)
            except (asyncio.CancelledError, SourceUnavailable):
                raise
            except Exception as exc:
                # Anything else is about this event (MaxPayloadError, an unencodable body): isolate it.
                raise EventRefused(f"{type(exc).__name__}: {exc}") from exc
