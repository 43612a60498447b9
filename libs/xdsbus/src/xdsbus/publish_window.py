"""Pipelined publishing to the event log: a bounded window of publishes awaiting their acknowledgement.

docs/design.md §4: publishes may be pipelined, but never two unacknowledged publishes of the same key,
so per key the log keeps the source's order. A publish is sent at once and its acknowledgement awaited
later, in the order of sending, by one drain task; a publish that failed, or whose acknowledgement did
not come within `ack_timeout`, is sent again with its own `Nats-Msg-Id` (JetStream stores it once
however often it is sent). The deadlines are kept by one watchdog per window, a timer that looks every
`ack_timeout / 4` at the oldest acknowledgement awaited and at the sends under way: a timer or a task per
publish would cost more than the publish itself (watch-k8s publishing a cold list, issue 16), at the
price of a deadline kept to within a quarter of itself. A later publish of a key whose
earlier one is still in the window waits for it; so does everything while the window is full.

A publish sent again after later ones were stored lands after them: only the order of one key's events
is kept, as the design asks. Whoever needs every earlier event stored first (a resync's sync_begin and
sync_end, which the fold reads against the upserts around them) calls `flush()`.

The window decides nothing about which failures pass: its owner (the Watcher) says which errors are
retried, stops the retries (a lost lease, a stop) by raising from `publish_may_retry`, and hears of every
publish that was stored or refused.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.errors import TimeoutError as NatsTimeoutError

from xdsbus.backoff import Backoff
from xdsbus.events import Event

log = logging.getLogger(__name__)

# Publishes in flight per watcher: enough to keep a busy server's pipe full (an acknowledgement takes
# ~0.1-1 ms locally, a few ms across a cluster), small enough that a failed batch is quick to resend.
DEFAULT_WINDOW = 512
# Seconds an acknowledgement may take before the publish counts as failed: as the bus's JetStream
# requests (xdsbus.bus).
DEFAULT_ACK_TIMEOUT = 10.0


@dataclass(eq=False, slots=True)
class Publish:
    """One event on its way: what is sent (always the same bytes and id) and its current attempt."""

    event: Event
    subject: str
    payload: bytes
    message_id: str
    # The key whose order this publish holds; None for sync events (they flush instead).
    key: tuple[str, str] | None
    attempt: asyncio.Future[Any] = field(init=False)  # the acknowledgement of the latest send
    sent_at: float = 0.0  # loop time of the latest send
    refused: bool = False  # set by the owner when the server refused it
    # Made when a later publish of the same key waits for this one.
    settled: asyncio.Future[None] | None = None


class WindowOwner(Protocol):
    """What the window asks of the watcher that owns it."""

    def publish_now(self, publish: Publish) -> asyncio.Future[Any] | None:
        """Send `publish` once if that needs no waiting (the message only joins the connection's
        buffer): the future of its acknowledgement; None when only `publish_attempt` can send it."""

    async def publish_attempt(self, publish: Publish) -> asyncio.Future[Any]:
        """Send `publish` once; the future of its acknowledgement (its result, or the server's error)."""

    def publish_retryable(self, exc: BaseException) -> bool:
        """Whether `exc` is a fault of the bus that passes by itself (the publish is sent again)."""

    def publish_may_retry(self, publish: Publish, exc: BaseException, delay: float) -> None:
        """Called before each resend; raises to stop publishing (a lost lease, a stop)."""

    def publish_stored(self, publish: Publish) -> Awaitable[None] | None:
        """JetStream acknowledged `publish`; what to await before the next one, if anything (most
        acknowledgements only count, and a coroutine per publish would cost more than the count)."""

    async def publish_refused(self, publish: Publish, exc: BaseException) -> None:
        """`publish` can never be stored (a refusal, not a fault of the bus)."""


class PublishWindow:
    """At most `size` publishes awaiting acknowledgement, at most one per key."""

    def __init__(
        self, owner: WindowOwner, size: int = DEFAULT_WINDOW, ack_timeout: float = DEFAULT_ACK_TIMEOUT
    ) -> None:
        if size < 1:
            raise ValueError("a publish window holds at least one publish")
        self.owner = owner
        self.size = size
        self.ack_timeout = ack_timeout
        self._queue: collections.deque[Publish] = collections.deque()
        self._by_key: dict[tuple[str, str], Publish] = {}
        self._room = asyncio.Event()
        self._room.set()
        self._drainer: asyncio.Task[None] | None = None
        # The tasks inside a send: when it began, and the task's cancellation count then.
        self._sending: dict[asyncio.Task[Any], tuple[float, int]] = {}
        self._expired: set[asyncio.Task[Any]] = set()  # cancelled by the watchdog: their send timed out
        self._watchdog: asyncio.TimerHandle | None = None
        # Why publishing stopped (a lost lease, a stop): raised to every later caller until `reset()`.
        self.failure: BaseException | None = None

    def __len__(self) -> int:
        return len(self._queue)

    def holds(self, key: tuple[str, str]) -> bool:
        """Whether a publish of `key` is in the window (then `wait_for_key` would wait)."""
        return key in self._by_key

    async def wait_for_key(self, key: tuple[str, str]) -> None:
        """Until no publish of `key` is in the window."""
        while (earlier := self._by_key.get(key)) is not None:
            await self._wait_settled(earlier)
        self.raise_failure()

    def submit_now(self, publish: Publish, before_send: Callable[[], None]) -> bool:
        """`submit` when that needs no waiting: the window has room, no publish of its key is in it,
        and the message goes straight into the connection's buffer. Whether it was sent; when not,
        nothing happened and `submit` sends it. Most publishes of a burst go this way, without the
        coroutines of `submit`."""
        key = publish.key
        if self.failure is not None or not self._free_for(key):
            return False
        before_send()
        if not self._send_now(publish):
            return False
        self._sent(publish, key)
        return True

    async def submit(self, publish: Publish, before_send: Callable[[], None]) -> None:
        """Send `publish` once there is room and no earlier publish of its key is in flight.
        `before_send` runs right before sending (the lease check: nothing is sent once it is lost)."""
        self.raise_failure()
        key = publish.key
        if not self._free_for(key):
            await self._make_way(key)
        before_send()
        if key is not None:
            self._by_key[key] = publish
        try:
            await self._send(publish)
        except BaseException:
            if key is not None:
                del self._by_key[key]
            raise
        self._sent(publish, key)

    def _sent(self, publish: Publish, key: tuple[str, str] | None) -> None:
        """`publish` went out: it holds its key and awaits its acknowledgement in the window."""
        if key is not None:
            self._by_key[key] = publish
        self._queue.append(publish)
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain(), name="publish-window")

    def _free_for(self, key: tuple[str, str] | None) -> bool:
        """Whether the window has room and no publish of `key` in it."""
        return len(self._queue) < self.size and (key is None or key not in self._by_key)

    async def _make_way(self, key: tuple[str, str] | None) -> None:
        """Until the window is free for `key` (`_free_for`)."""
        while True:
            if key is not None:
                await self.wait_for_key(key)
            while len(self._queue) >= self.size:
                self._room.clear()
                await self._room.wait()
                self.raise_failure()
            if self._free_for(key):
                return

    async def flush(self) -> None:
        """Until every publish sent so far was stored or refused (later ones may still be in flight);
        raises why publishing stopped. Acknowledgements are taken in order, so the last one is enough."""
        if self._queue:
            await self._wait_settled(self._queue[-1])
        self.raise_failure()

    @staticmethod
    async def _wait_settled(publish: Publish) -> None:
        if publish.settled is None:
            publish.settled = asyncio.get_running_loop().create_future()
        await asyncio.shield(publish.settled)

    def raise_failure(self) -> None:
        """Raise why publishing stopped, if it did."""
        if self.failure is not None:
            raise self.failure

    def abort(self) -> None:
        """Stop at once: nothing more is sent, acknowledgements are no longer awaited."""
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None
        # The watchdog stays: a send still under way keeps its deadline; it stops once nothing is.
        self._forget_all()

    def reset(self) -> None:
        """Publish again after a stop (a new term)."""
        self.abort()
        self.failure = None

    async def _drain(self) -> None:
        """Await the acknowledgements in the order of sending; resend what failed."""
        backoff = Backoff(base=0.1, cap=5.0)
        queue = self._queue
        try:
            while queue:
                head = queue[0]
                attempt = head.attempt
                if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
                    exc = None  # acknowledged already: the common case once acknowledgements flow
                else:
                    exc = await self._outcome(head)
                if exc is None:
                    backoff.reset()
                    stored = self.owner.publish_stored(head)
                    if stored is not None:
                        await stored
                    self._settle(head)
                elif self.owner.publish_retryable(exc):
                    delay = backoff.next_delay()
                    self.owner.publish_may_retry(head, exc, delay)
                    await asyncio.sleep(delay)
                    await self._resend_failed()
                else:
                    await self.owner.publish_refused(head, exc)
                    self._settle(head)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Publishing stops (a lost lease, a stop): callers see why.
            self.failure = exc
            self._forget_all()
        finally:
            if asyncio.current_task() is self._drainer:
                self._drainer = None

    def _send_now(self, publish: Publish) -> bool:
        """Send `publish` if that needs no waiting (`owner.publish_now`); whether it was sent (an
        attempt that failed at once counts: it is resent like any other)."""
        loop = asyncio.get_running_loop()
        publish.sent_at = loop.time()
        if self._watchdog is None:
            self._arm_watchdog(loop)
        try:
            attempt = self.owner.publish_now(publish)
        except Exception as exc:
            # Not sent (a payload over the server's limit, say): a failed attempt like any other.
            attempt = loop.create_future()
            attempt.set_exception(exc)
        if attempt is None:
            return False
        # Most sends: nothing awaited, so no deadline to keep.
        publish.attempt = attempt
        return True

    async def _send(self, publish: Publish) -> None:
        if self._send_now(publish):
            return
        loop = asyncio.get_running_loop()
        now = publish.sent_at
        task = asyncio.current_task()
        assert task is not None
        # Bounded (the watchdog): nats-py's publish can wait, with no deadline, for a forced flush of
        # its buffer that a connection lost mid-write never completes; that wait would stall the window.
        base = task.cancelling()
        self._sending[task] = (now, base)
        expired = self._expired
        try:
            attempt = await self.owner.publish_attempt(publish)
        except asyncio.CancelledError:
            # Only the watchdog's own cancellation is a timeout; any other goes on.
            if task not in expired:
                raise
            expired.discard(task)
            if task.uncancel() > base:
                raise
            attempt = loop.create_future()
            attempt.set_exception(NatsTimeoutError())
        except Exception as exc:
            # Not sent (no connection now, say): a failed attempt like any other.
            attempt = loop.create_future()
            attempt.set_exception(exc)
        finally:
            del self._sending[task]
            if task in expired:
                # Cancelled by the watchdog, but the send swallowed it and returned: as asyncio.timeout.
                expired.discard(task)
                task.uncancel()
        publish.attempt = attempt

    def _arm_watchdog(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watchdog is None:
            self._watchdog = loop.call_later(self.ack_timeout / 4, self._check_deadlines)

    def _check_deadlines(self) -> None:
        """The watchdog: a send under way for `ack_timeout` is cancelled (its task carries on with a
        failed attempt), and so is the oldest acknowledgement awaited for as long (the drain task
        resends it). Looks again later while anything is in flight."""
        self._watchdog = None
        loop = asyncio.get_running_loop()
        overdue = loop.time() - self.ack_timeout
        for task, (began, _) in self._sending.items():
            if began <= overdue and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._queue:
            head = self._queue[0]
            if head.sent_at <= overdue and not head.attempt.done():
                head.attempt.cancel()
        if self._queue or self._sending:
            self._arm_watchdog(loop)

    async def _outcome(self, publish: Publish) -> BaseException | None:
        """None once `publish` is acknowledged, else why its latest attempt failed. An acknowledgement
        that does not come within `ack_timeout` of the send is a timeout: the attempt is cancelled (here,
        or by the watchdog while it is awaited), which frees the client's slot for it."""
        attempt = publish.attempt
        if not attempt.done():
            if publish.sent_at + self.ack_timeout <= asyncio.get_running_loop().time():
                attempt.cancel()
            else:
                try:
                    await attempt
                except asyncio.CancelledError:
                    # The attempt cancelled (timed out, the acknowledgements' subscription closed) is
                    # its outcome; the drain task itself cancelled is not.
                    task = asyncio.current_task()
                    if not attempt.cancelled() or (task is not None and task.cancelling()):
                        raise
                except Exception:
                    pass  # its exception is read below
        if attempt.cancelled():
            return NatsTimeoutError()
        return attempt.exception()

    async def _resend_failed(self) -> None:
        """Send again, with their own ids, the head and every later publish whose attempt failed: after
        a fault of the bus most of the window failed at once, and one pause covers them all."""
        for publish in list(self._queue):
            attempt = publish.attempt
            if attempt.done() and (attempt.cancelled() or attempt.exception() is not None):
                await self._send(publish)

    def _settle(self, publish: Publish) -> None:
        self._queue.popleft()
        key = publish.key
        if key is not None and self._by_key.get(key) is publish:
            del self._by_key[key]
        if publish.settled is not None and not publish.settled.done():
            publish.settled.set_result(None)
        # A full window takes new publishes again once half of it is acknowledged: they are then sent
        # together, in one write to the socket, instead of one write each as single slots free up.
        if len(self._queue) <= self.size // 2:
            self._room.set()

    def _forget_all(self) -> None:
        for publish in self._queue:
            if not publish.attempt.done():
                publish.attempt.cancel()
            elif not publish.attempt.cancelled():
                publish.attempt.exception()  # retrieved: no "exception never retrieved" noise
            if publish.settled is not None and not publish.settled.done():
                publish.settled.set_result(None)
        self._queue.clear()
        self._by_key.clear()
        self._room.set()
