"""Following the event log through a durable pull consumer, with pull requests of our own, for the
builder's live fold.

nats-py's `fetch` awaits each message through `next_msg` (a task, a `wait_for` timer and a uuid per
message) and parses `Msg.metadata` (a datetime and two dataclasses): 12-15% of the builder's CPU in a
cold load. And its long-polling batch fetch held a lone event until the fetch's timeout. Here, as in
fold/log_range.py, one pull request is open at a time and a subscription callback collects what it
delivers; the caller takes everything collected so far, at once, and a lone event wakes a waiting
caller as soon as it arrives.

A request asks for up to `batch` messages and `max_bytes`, long-polls for `expires` seconds, and asks
the server for an idle heartbeat. It ends when its count is delivered, or with a status: 408 (expired),
404 (nothing more), 409 "Message Size Exceeds MaxBytes"; the next one goes out at once, while the caller
folds what came. 409 "Batch Completed" follows a completed request and says nothing. Any other status
(409 "Consumer Deleted", "Leadership Change", "Server Shutdown", "Exceeded MaxWaiting", 503 no
responders...) and a server silent for SILENT_HEARTBEATS heartbeats raise `PullInterrupted`. Silence
also covers a request the server dropped without a word: nats-server 2.15 refuses a request that asks
for heartbeats over the consumer's MaxWaiting that way (one request is open at a time, so only another
reader of the same consumer fills its waiting slots).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import NamedTuple

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import api
from nats.js.errors import ServiceUnavailableError

from xdsbus.bus import Bus
from xdsbus.fold.log_range import stream_seq

# Messages per pull request: what the caller finds at most in one take after a long fold.
PULL_BATCH = 1000
# Bytes per pull request: bounds what waits unfolded (a message is at most 1 MiB, claim check).
PULL_MAX_BYTES = 16 << 20
# Seconds a pull request waits for messages on the server before it ends with a 408.
PULL_EXPIRES = 30.0
# Seconds between the server's idle heartbeats on an open request with nothing to deliver.
HEARTBEAT = 5.0
# Heartbeats missed, counted in the caller's waiting time, before the server counts as gone.
SILENT_HEARTBEATS = 3

_ACK = b"+ACK"
# Statuses that end a request normally: the next one goes out at once.
_ENDED = frozenset(
    {("404", "No Messages"), ("408", "Request Timeout"), ("409", "Message Size Exceeds MaxBytes")}
)
_HEARTBEAT = "100"
_COMPLETED = ("409", "Batch Completed")


class Delivery(NamedTuple):
    """One event delivered by the consumer: its stream sequence, subject, envelope bytes and the reply
    subject that acks it."""

    seq: int
    subject: str
    data: bytes
    reply: str


class PullInterrupted(ServiceUnavailableError):
    """The consumer stopped serving pull requests: deleted, moved to another leader, the server shut
    down or went silent. A `ServiceUnavailableError`, hence transient (xdsbus.transient): the builder
    stands by and leads again on a new consumer."""

    def __str__(self) -> str:
        return f"pull from consumer interrupted: {self.description}"


def num_pending(reply: str) -> int:
    """The consumer's pending count after a delivery, from its reply subject: `$JS.ACK.<stream>.
    <consumer>.<delivered>.<stream seq>.<consumer seq>.<time>.<pending>` (9 tokens), or with a domain
    and account hash after `$JS.ACK` and maybe a random token at the end (11 or 12 tokens)."""
    tokens = reply.split(".")
    return int(tokens[8] if len(tokens) == 9 else tokens[10])


class LivePull:
    """Reads a durable pull consumer: `next` returns what arrived, `ack` acks up to a delivery
    (AckPolicy.ALL), `close` ends the subscription. Made on the consumer `info` that `add_consumer`
    returns, then `start`ed."""

    def __init__(
        self,
        bus: Bus,
        info: api.ConsumerInfo,
        *,
        batch: int = PULL_BATCH,
        max_bytes: int = PULL_MAX_BYTES,
        expires: float = PULL_EXPIRES,
        heartbeat: float = HEARTBEAT,
    ) -> None:
        self.bus = bus
        self.stream = info.stream_name
        self.consumer = info.name
        self.batch = batch
        self._request = json.dumps(
            {
                "batch": batch,
                "max_bytes": max_bytes,
                "expires": int(expires * 1e9),
                "idle_heartbeat": int(heartbeat * 1e9),
            }
        ).encode()
        self._subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self.consumer}"
        self._inbox = bus.nc.new_inbox()
        self._sub: Subscription | None = None
        self._silence = heartbeat * SILENT_HEARTBEATS
        # The consumer's pending count after the newest delivery the caller took.
        self._pending = info.num_pending or 0
        self._buffer: list[Delivery] = []
        # Messages the open request may still deliver; 0: no request open.
        self._wanted = 0
        self._error: PullInterrupted | None = None
        # Whether anything came since the caller last looked, and the caller's waiting time since.
        self._heard = False
        self._silent = 0.0
        self._waiter: asyncio.Future[None] | None = None

    async def start(self) -> LivePull:
        """Subscribe to the consumer's deliveries and send the first pull request; returns the reader."""
        self._sub = await self.bus.nc.subscribe(self._inbox, cb=self._on_message)
        await self._pull()
        return self

    @property
    def pending(self) -> int:
        """Events in the log after the newest one `next` returned, when the server sent it (the
        consumer's pending count at open before any): above 0, the caller is behind the log."""
        return self._pending

    async def next(self, timeout: float) -> list[Delivery]:
        """Everything delivered since the last call, in order, waiting up to `timeout` seconds for a
        first one (empty when none came). Raises `PullInterrupted`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self._buffer:
            if self._error is not None:
                raise self._error
            if self._wanted == 0:
                await self._pull()
                continue
            now = loop.time()
            if now >= deadline:
                return []
            await self._wait(loop, deadline - now)
            waited = loop.time() - now
            if self._heard:
                self._heard, self._silent = False, 0.0
            elif self._wanted > 0 and not self._buffer:
                self._silent += waited
                if self._silent > self._silence:
                    self._error = PullInterrupted(
                        description=f"no reply from the server in {self._silent:.1f}s"
                    )
        taken, self._buffer = self._buffer, []
        self._pending = num_pending(taken[-1].reply)
        if self._wanted == 0 and self._error is None:
            # The request held back while the buffer was full: ask now, so the next batch arrives
            # while the caller folds this one.
            await self._pull()
        return taken

    async def ack(self, delivery: Delivery) -> None:
        """Ack `delivery` and every one before it (AckPolicy.ALL)."""
        await self.bus.nc.publish(delivery.reply, _ACK)

    async def consumer_info(self) -> api.ConsumerInfo:
        """The consumer's state on the server (pending, ack floor...)."""
        return await self.bus.js.consumer_info(self.stream, self.consumer)

    async def close(self) -> None:
        """End the subscription; the server drops the open request with it."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _wait(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        # A future and a timer rather than Event.wait under wait_for, which makes a task per wait.
        waiter = loop.create_future()
        self._waiter = waiter
        timer = loop.call_later(seconds, _wake, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None

    async def _pull(self) -> None:
        self._wanted = self.batch
        self._silent = 0.0
        await self.bus.nc.publish(self._subject, self._request, reply=self._inbox)

    async def _on_message(self, msg: Msg) -> None:
        self._heard = True
        reply = msg.reply
        if reply:
            self._buffer.append(Delivery(stream_seq(reply), msg.subject, msg.data, reply))
            self._wanted -= 1
            if self._wanted > 0:
                self._wake()
                return
        else:
            headers = msg.headers or {}
            status = (headers.get(api.Header.STATUS.value, ""), headers.get(api.Header.DESCRIPTION.value, ""))
            if status[0] == _HEARTBEAT or status == _COMPLETED or self._wanted == 0:
                # A heartbeat, the mark after a completed request, or what follows a status that ended
                # the request already.
                return
            self._wanted = 0
            if status not in _ENDED:
                self._error = PullInterrupted(description=" ".join(filter(None, status)) or "empty status")
                self._wake()
                return
        if len(self._buffer) < self.batch:
            await self._pull()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _wake(self._waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
