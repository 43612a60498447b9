"""The builder: while it holds the lease, fold events, debounce, translate and publish versions."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time

import msgspec
from nats.js import api
from nats.js.errors import KeyNotFoundError, NotFoundError

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.type_urls import SECRET
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX, subject_token
from xdsbus.fold.folding import BatchResult, fold_stored
from xdsbus.fold.live_pull import LivePull
from xdsbus.fold.reading import EventGap, check_next, find_gap
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.layout import DEFAULT_LEASE_TTL
from xdsbus.lease import Lease
from xdsbus.ledger import checkpoints
from xdsbus.ledger.publisher import PUBLISH_RETRY_WITHIN, LedgerPublisher, LostLedger
from xdsbus.secretbox import SecretBox
from xdsbus.transient import describe, is_transient, retry_transient
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator
from xdsbus_builder import gaps
from xdsbus_builder.debounce import MIN_WAIT, decide
from xdsbus_builder.derived_scopes import DerivedScopes
from xdsbus_builder.figures import BACKLOG_EVERY, BuilderFigures
from xdsbus_builder.history import History
from xdsbus_builder.pinning import PinnedScope, Step, release_mark, step
from xdsbus_builder.restore import Restored, restore
from xdsbus_builder.retention import Retention
from xdsbus_builder.route_table_status import RouteTableStatus
from xdsbus_builder.teardown import end_term, settle

log = logging.getLogger(__name__)

# Events per pull request of the live fold (fold/live_pull.py): what one look takes at most.
FETCH_BATCH = 1000
# Objects folded and not yet translated beyond which the builder translates them before the version is
# cut: large enough that an Ingress, its Service and its slice usually meet in one translation, small
# enough that a cold load's version waits for a fraction of a full build (bench cold_load).
TRANSLATE_AHEAD = 5000
# While the builder is behind the log (more events stored than it has fetched: a cold load, a resync),
# a checkpoint due for its event count or age waits until it catches up when it would cost more than it
# saves a replay: while the events folded since the last one are fewer than CHECKPOINT_DEFER_RATIO times
# the objects held (a replay loads the objects, then folds those events). A cold load, where each event
# adds an object, so takes one checkpoint at its end instead of encoding and uploading the growing state
# every `checkpoint_events` (bench cold_load: 6 checkpoints of up to 60k objects became one); a backlog
# of changes to few objects is checkpointed as if the builder kept up, so a replay to one of its
# versions folds few events (bench replay_1m_recent: 1M events over ~3k objects). Never past
# CHECKPOINT_DEFER_FACTOR times `checkpoint_events` folded since the last one; the log's storage
# pressure never waits.
CHECKPOINT_DEFER_RATIO = 2
CHECKPOINT_DEFER_FACTOR = 10
# Seconds an idle builder waits for an event before it looks at its lease and checkpoint again.
IDLE_WAIT = 1.0
# Seconds between looks at a gap in the event log: a checkpoint restored by an operator ends it.
GAP_RETRY = 5.0


class BuilderConfig(msgspec.Struct, frozen=True, kw_only=True):
    scope: str = "default"
    instance_id: str = "builder"
    debounce_quiet: float = 0.1
    debounce_max: float = 1.0
    checkpoint_events: int = 10_000
    checkpoint_seconds: float = 30.0
    lease_ttl: float = DEFAULT_LEASE_TTL
    # History kept (docs/design.md §4–5): versions, bases and daily checkpoints younger than this.
    history_window: float = 30 * 24 * 3600.0
    # Newest checkpoints kept whatever their age, besides one a day inside the window.
    checkpoints_keep: int = 10
    # Inside the window, also the first checkpoint of every this many events: a replay to any version in
    # the window folds at most about this many events (docs/design.md §8: under 10 s).
    checkpoints_span: int = 100_000
    # A ledger base (full manifest) every this many versions, and at least daily.
    base_every: int = 1000
    translator: TranslatorSettings = TranslatorSettings()


class Builder:
    """One builder process; only the lease holder publishes."""

    def __init__(
        self,
        bus: Bus,
        config: BuilderConfig,
        *,
        secret_box: SecretBox | None = None,
        figures: BuilderFigures | None = None,
    ) -> None:
        self.bus = bus
        self.config = config
        # What /metrics and /ready show (xdsbus.health).
        self.figures = figures or BuilderFigures(config.scope)
        # Opens the sealed Secret bodies of the event log; without it Secrets are rejected.
        self.secret_box = secret_box
        # One consumer per instance, never shared: a paused leader that wakes up fetches from its own
        # consumer, never from its successor's, where its fetch would take events the successor then acks
        # past (AckPolicy.ALL) without ever folding them.
        self.consumer_name = f"xdsbus-builder-{config.scope}-{subject_token(config.instance_id)}"
        self.lease = Lease(bus, f"builder.{config.scope}", config.instance_id, config.lease_ttl)

    async def run(self, stop: asyncio.Event) -> None:
        """Wait for the lease, lead until stopped or the lease is lost, and wait again."""
        while not stop.is_set():
            log.info("%s waiting for the lease of scope %s", self.config.instance_id, self.config.scope)
            if not await self.lease.acquire(stop):
                return
            self.figures.leading, self.figures.term = True, self.lease.term
            try:
                await self._lead_while_held(stop)
            except LostLedger as exc:
                log.error("stepping down: %s", exc)
            except Exception as exc:
                # A NATS fault that outlasted the publisher's retries: stand by for the lease again
                # instead of exiting (issue 14); the term record fences whatever this leader left.
                if not is_transient(exc):
                    raise
                log.error("stepping down after a NATS fault: %s", describe(exc))
            finally:
                self.figures.leading, self.figures.backlog = False, None
                await self.lease.release()

    async def _lead_while_held(self, stop: asyncio.Event) -> None:
        """Lead one term; when the lease is lost meanwhile, end the term at once wherever the leader
        waits (a publish retried through an election, a listing, a checkpoint), instead of when it next
        looks at the lease: what it would still publish is fenced anyway, and a standby may lead."""
        leader = asyncio.create_task(_Leader(self, stop).lead())
        lost = asyncio.create_task(self.lease.lost.wait())
        try:
            await asyncio.wait({leader, lost}, return_when=asyncio.FIRST_COMPLETED)
            if not leader.done():
                await end_term(leader, self.lease.term)
                raise LostLedger("lease lost")
        finally:
            lost.cancel()
            # Cancelled from outside (the service stops): the leader goes with it.
            leader.cancel()
        leader.result()


class _Leader:
    """State of one term of leadership."""

    def __init__(self, builder: Builder, stop: asyncio.Event) -> None:
        self.bus = builder.bus
        self.config = builder.config
        self.consumer_name = builder.consumer_name
        self.lease = builder.lease
        self.stop = stop
        self.state = FoldState()
        self.secret_box = builder.secret_box
        self.figures = builder.figures
        # Built anew by each restore (lead).
        self.translator: Translator
        # The gap last reported (after, first, last), so a waiting builder logs it once.
        self.reported_gap: tuple[int, int, int] | None = None
        self.publisher = LedgerPublisher(
            self.bus, self.config.scope, self.config.translator.describe(), self.secret_box
        )
        # Each Gateway's derived scope, published from the same fold (docs/design.md §5).
        self.derived = DerivedScopes(
            self.bus, self.config.scope, self.config.translator.describe(), self.lease, self.secret_box
        )
        # The scope's pin (rollback as an event, docs/rollback.md).
        self.pinned = PinnedScope(self.bus, self.config.scope, self.secret_box)
        # The form of the HTTP port's route table, reported when it changes (docs/route-table-split.md).
        self.route_table_status = RouteTableStatus(self.config.scope)
        self.checkpoint_seq = 0
        self.checkpoint_time = time.monotonic()
        self.checkpoint_task: asyncio.Task[None] | None = None
        # Checkpoint pruning and purging the event log below the checkpoints (docs/design.md §4).
        self.retention = Retention(
            self.bus,
            self.config.scope,
            keep_newest=self.config.checkpoints_keep,
            window=self.config.history_window,
            span=self.config.checkpoints_span,
        )
        # Ledger bases, the history window and the body sweep (docs/design.md §5).
        self.history = History(
            self.bus, self.config.scope, base_every=self.config.base_every, window=self.config.history_window
        )

    async def lead(self) -> None:
        """Restore, fence and follow the log; over a gap in it, publish nothing and wait (keeping the
        lease: a standby would meet the same gap), then restore again."""
        migration = asyncio.create_task(self._migrate_status_keys(), name="status key migration")
        try:
            await self._lead()
        finally:
            migration.cancel()
            await asyncio.gather(migration, return_exceptions=True)

    async def _migrate_status_keys(self) -> None:
        """Move statuses stored under the earlier key layout (status_store.migrate_legacy_keys), beside
        the term's work: a large bucket takes a while, and a failure is retried by the next term."""
        try:
            await status_store.migrate_legacy_keys(self.bus)
        except Exception as exc:
            log.warning("status entries of the earlier key layout not moved this term: %s", describe(exc))

    async def _lead(self) -> None:
        fenced = False
        while not self.stop.is_set():
            restored = await self._restore_without_gap()
            if restored is None:
                return
            self.state = restored.state
            self.checkpoint_seq = self.state.seq
            self.publisher.adopt_head(restored.last_stream_seq, restored.head_version)
            self.figures.version = restored.head_version
            self.pinned = PinnedScope(self.bus, self.config.scope, self.secret_box)
            self.pinned.head_digest = restored.head_digest
            if not fenced:
                await self._fence()
                fenced = True
            self.translator = Translator(self.config.translator, secret_box=self.secret_box)
            self.translator.full_build(self.state)
            self.translator.table.set_committed(restored.committed)
            await self.publisher.reseal(
                [res for key, res in self.translator.table.items() if key.type_url == SECRET]
            )
            # What the restore built lives as long as this term: keep the cyclic collector off it.
            gc.freeze()
            await self._publish_status()
            sub = await self._subscribe()
            backlog = asyncio.create_task(self._read_backlog(sub))
            try:
                await self._loop(sub)
                return
            except EventGap as gap:
                # Events were deleted under the running builder: what it folded since its last version
                # is dropped unpublished, and it starts over from its checkpoint once the gap is gone.
                await self._report_gap(gap)
                await self._pause(GAP_RETRY)
            finally:
                backlog.cancel()
                # Bounded: a checkpoint or collection stuck on a NATS fault must not hold the term open.
                if self.checkpoint_task is not None:
                    await settle(self.checkpoint_task, f"checkpoint of scope {self.config.scope}")
                await self.history.close()
                await sub.close()

    async def _restore_without_gap(self) -> Restored | None:
        """Restore from the newest checkpoint, once every event after it is in the log (docs/design.md
        §4: no fold crosses a gap); None when stopped meanwhile."""
        while not self.stop.is_set():
            try:
                restored = await restore(self.bus, self.config.scope)
                gap = await find_gap(self.bus, restored.state.seq)
                if gap is None:
                    if self.reported_gap is not None:
                        log.info("scope %s: the gap in the event log is resolved", self.config.scope)
                    self.reported_gap = None
                    self.figures.gap = None
                    await gaps.clear(self.bus, self.config.scope)
                    return restored
            except EventGap as exc:
                gap = exc
            await self._report_gap(gap)
            await self._pause(GAP_RETRY)
        return None

    async def _report_gap(self, gap: EventGap) -> None:
        """Report a gap once, not at every look."""
        seen = (gap.after, gap.first, gap.last)
        self.figures.gap = gaps.describe(gap)
        if seen != self.reported_gap:
            await gaps.report(self.bus, self.config.scope, gap)
            self.reported_gap = seen

    async def _read_backlog(self, sub) -> None:  # type: ignore[no-untyped-def]
        """Keep the fold backlog of /metrics: the consumer's pending count, read every BACKLOG_EVERY."""
        while True:
            try:
                self.figures.backlog = (await sub.consumer_info()).num_pending
            except Exception as exc:  # a figure that cannot be read now is read at the next look
                log.debug("cannot read the consumer's pending count: %s", exc)
            await asyncio.sleep(BACKLOG_EVERY)

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds`, or less when stopped; LostLedger when the lease is lost meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        if self.lease.lost.is_set():
            raise LostLedger("lease lost")

    async def _fence(self) -> None:
        """Publish this term's term record (docs/design.md §5): from then on nothing a former leader
        publishes is accepted. The term is the lease's revision, read back from the lease bucket, which
        also shows the lease is still ours. A publish since the restore read the ledger raises
        `LostLedger`, and this builder stands by like any leader whose publish is refused."""
        try:
            entry = await self.bus.leases.get(self.lease.name)
        except KeyNotFoundError as exc:
            raise LostLedger(f"lease {self.lease.name} expired before the term record") from exc
        if (entry.value or b"").decode() != self.lease.holder or entry.revision is None:
            raise LostLedger(f"lease {self.lease.name} is no longer held by {self.lease.holder}")
        record = await self.publisher.publish_term(entry.revision, self.lease.holder)
        log.info(
            "term %d of scope %s: %s leads after version %d",
            record.term.term,
            self.config.scope,
            self.lease.holder,
            record.term.head_version,
        )

    async def _subscribe(self) -> LivePull:
        """A new consumer of the events after the fold, and the reader of its deliveries."""
        try:
            await self.bus.js.delete_consumer(EVENTS_STREAM, self.consumer_name)
        except NotFoundError:
            pass
        config = api.ConsumerConfig(
            durable_name=self.consumer_name,
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=self.state.seq + 1,
            filter_subject=f"{EVENTS_SUBJECT_PREFIX}.>",
            ack_policy=api.AckPolicy.ALL,
            max_ack_pending=-1,
            ack_wait=300,
            # The consumers of instances that are gone (or stand by) are removed by the server.
            inactive_threshold=3600.0,
        )
        info = await self.bus.js.add_consumer(EVENTS_STREAM, config=config)
        return await LivePull(self.bus, info, batch=FETCH_BATCH).start()

    async def _loop(self, sub: LivePull) -> None:
        quiet, max_delay = self.config.debounce_quiet, self.config.debounce_max
        # When the pending events were folded: the oldest and the newest (None: nothing pending).
        first: float | None = None
        last: float | None = None
        until: float | None = None
        # When the last publish ended (None: none yet this term): the leading edge of the debounce.
        published: float | None = None
        last_msg = None
        # Whether the log held more events than fetched when the last batch came (its num_pending).
        behind = False
        # What was folded since the last version and not translated yet: translation waits for the
        # version, so that a host touched by several batches (an Ingress, its Service and its slice in
        # three fetches of a cold load) is rebuilt once per version, not once per fetch.
        untranslated: dict[ObjectRef, None] = {}
        while not self.stop.is_set():
            if self.lease.lost.is_set():
                raise LostLedger("lease lost")
            timeout = IDLE_WAIT if until is None else max(MIN_WAIT, until - time.monotonic())
            # Everything delivered so far; idle, the first event as soon as it comes (fold/live_pull.py).
            msgs = await sub.next(timeout)
            if msgs:
                result = BatchResult()
                for msg in msgs:
                    seq = msg.seq
                    # The consumer skips what was purged while it was behind: no fold over that gap.
                    check_next(self.state, seq)
                    await fold_stored(self.bus, self.state, seq, msg.subject, msg.data, result)
                untranslated.update(dict.fromkeys(result.changed))
                if len(untranslated) >= TRANSLATE_AHEAD:
                    # A long batch (a burst, a resync): what is folded so far is translated while more
                    # arrives, so that the version does not wait for all of it at once.
                    self.translator.update(self.state, list(untranslated))
                    untranslated.clear()
                if result.rejected:
                    for rejection in result.rejected:
                        log.error(
                            "event %d on %s rejected: %s", rejection.seq, rejection.subject, rejection.reason
                        )
                    await status_store.publish_rejections(self.bus, result.rejected)
                last_msg = msgs[-1]
                behind = sub.pending > 0
            now = time.monotonic()
            if msgs:
                first = now if first is None else first
                last = now
            elif until is not None:
                # The wait ran out without an event (a timer may wake the loop a hair before its
                # deadline): its deadline has come.
                now = max(now, until)
            decision = decide(first, last, now, quiet=quiet, max_delay=max_delay, published=published)
            until = decision.until
            if decision.publish:
                self.translator.update(self.state, list(untranslated))
                untranslated.clear()
                await self._flush(behind)
                if last_msg is not None:
                    await sub.ack(last_msg)
                first = last = None
                published = time.monotonic()
            elif first is None:
                await self._maybe_checkpoint()

    async def _flush(self, behind: bool) -> None:
        """Publish a version when the resources changed; the version is the last folded sequence. A
        pinned scope publishes only its pin's version (pinning.py). `behind`: the log holds more events
        than fetched, so a due checkpoint may wait (CHECKPOINT_DEFER_RATIO)."""
        table = self.translator.table
        pin = self.state.pin_of(self.config.scope)
        action = step(pin, self.pinned.served, self.pinned.refused)
        if action is Step.SERVE:
            assert pin is not None
            record = await self.pinned.serve(pin, table, self.publisher, self.state.seq)
            if record is not None:
                self.figures.published(record.version)
                self.history.published(record, self.publisher.last_stream_seq, table.committed)
        elif action is Step.FOLLOW:
            self.pinned.follow()
            first_seq = self.publisher.head_version + 1
            changes = table.commit()
            if changes:
                record = await self.publisher.publish(
                    version=self.state.seq,
                    first_seq=first_seq,
                    changes=changes,
                    digest=table.digest(),
                    resource_count=len(table),
                    pin=release_mark(pin, first_seq, self.state.seq),
                )
                self.pinned.head_digest = record.digest
                self.figures.published(record.version)
                log.info(
                    "version %d: %d changed, %d removed, %d resources, digest %s",
                    record.version,
                    record.changed_count,
                    record.removed_count,
                    record.resource_count,
                    record.digest[:12],
                )
                self.history.published(record, self.publisher.last_stream_seq, table.committed)
        await self.derived.publish(self.translator, self.state.seq)
        await self._publish_status()
        await self._maybe_checkpoint(behind)

    async def _publish_status(self) -> None:
        """The translator's status changes, sent again through transient NATS faults (KV puts of the
        same values), so that a timeout there does not cost a leader its term."""
        changes = list(self.translator.take_status_changes())
        pin = self.pinned.changed_status(
            self.state.pin_of(self.config.scope),
            self.translator.table,
            self.publisher.head_version,
            self.state.seq,
        )
        if pin is not None:
            changes.append(pin)
        route_tables = self.route_table_status.changed(self.translator.route_tables)
        if route_tables is not None:
            changes.append(route_tables)
        await retry_transient(
            lambda: status_store.publish(self.bus, changes),
            what=f"scope {self.config.scope}: publishing object status",
            within=PUBLISH_RETRY_WITHIN,
        )

    async def _maybe_checkpoint(self, behind: bool = False) -> None:
        """Checkpoint when enough events or time passed, at a point where everything is published; while
        `behind` the log, a due one may wait (CHECKPOINT_DEFER_RATIO, CHECKPOINT_DEFER_FACTOR)."""
        self.history.tick()
        folded = self.state.seq - self.checkpoint_seq
        if folded <= 0:
            return
        every = self.config.checkpoint_events
        due = folded >= every or (time.monotonic() - self.checkpoint_time >= self.config.checkpoint_seconds)
        if (
            due
            and behind
            and folded < CHECKPOINT_DEFER_FACTOR * every
            and folded < CHECKPOINT_DEFER_RATIO * self.state.count()
        ):
            due = False
        due = due or await self.retention.pressing()
        if not due or (self.checkpoint_task is not None and not self.checkpoint_task.done()):
            return
        # Copied now (about 10 ms at 30k objects), encoded and uploaded in the background: the fold goes
        # on mutating the live state meanwhile, and the encoding gives the event loop back every
        # millisecond or so (checkpoints.encode_snapshot), so nothing waits on it.
        snap = checkpoints.snapshot(
            scope=self.config.scope,
            translator_version=self.config.translator.describe(),
            state=self.state,
            ledger_version=self.publisher.head_version,
            ledger_stream_seq=self.publisher.last_stream_seq,
            published=self.translator.table.committed(),
        )
        self.checkpoint_seq = self.state.seq
        self.checkpoint_time = time.monotonic()
        self.checkpoint_task = asyncio.create_task(self._save(snap))

    async def _save(self, snap: checkpoints.Snapshot) -> None:
        try:
            data = await checkpoints.encode_snapshot(snap)
            name = await checkpoints.save(self.bus, self.config.scope, snap.seq, data)
            log.info("checkpoint %s saved (%d bytes)", name, len(data))
            self.figures.checkpoint_at = time.monotonic()
        except Exception as exc:  # a failed checkpoint only costs a longer refold later
            log.warning("checkpoint at %d failed: %s", snap.seq, exc)
            return
        try:
            await self.retention.after_checkpoint(time.time())
            self.figures.log_full = self.retention.full
        except Exception as exc:  # retention runs again after the next checkpoint
            log.warning("retention after checkpoint %d failed: %s", snap.seq, exc)
