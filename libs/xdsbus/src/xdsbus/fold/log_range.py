"""Reading a range of the event log in large pull requests of our own, for folds of many events.

A replay or a restart folds up to hundreds of thousands of events. nats-py's `fetch` awaits each message
through `next_msg`, which makes a task, a `wait_for` timer and a uuid per message: about half of what
a replay cost (bench/replay_1m_recent.py). Here one pull request asks for a batch of messages, a
subscription callback collects them, and the next request goes out as soon as one is complete, while
the previous batch is still being folded: one request is open at a time, so every reply belongs to it.

A pull request is `no_wait`: the server sends what it holds up to the batch, then ends a short batch
with a 404 (nothing more) status; a 409 ends a request whose next message would pass `max_bytes`, and
another 409 follows a request that completed its batch below `max_bytes` (ignored: the count decides).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import NamedTuple

from nats.aio.msg import Msg
from nats.js import api

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX

# Messages per pull request.
PULL_BATCH = 5000
# Bytes per pull request (messages, headers and subjects): bounds what waits unfolded. A message is at
# most 1 MiB (larger bodies are claim-checked), so a request always makes progress.
PULL_MAX_BYTES = 16 << 20
# Seconds without any reply to a pull request before the read fails (NATS gone, consumer lost).
REPLY_TIMEOUT = 10.0
# Statuses after a pull request's messages: 404 (no messages) and 408 (expired) say the log holds no
# more; the 409s say the request reached its max_bytes, or completed its batch with bytes to spare.
_NO_MORE = ("404", "408")
_MAX_BYTES = ("409", "Message Size Exceeds MaxBytes")
_COMPLETED = ("409", "Batch Completed")


class LogMessage(NamedTuple):
    """One stored event: its stream sequence, subject and envelope bytes."""

    seq: int
    subject: str
    data: bytes


class PullFailed(RuntimeError):
    """The server ended a pull request with a status other than the expected ones (consumer deleted,
    leadership change...)."""


def stream_seq(reply: str) -> int:
    """The stream sequence in a JetStream delivery's reply subject, without nats-py's `metadata` (which
    builds a datetime and two dataclasses per message): `$JS.ACK.<stream>.<consumer>.<delivered>.<stream
    seq>...` (9 tokens), or with a domain and account hash after `$JS.ACK` (11 or 12 tokens)."""
    tokens = reply.split(".")
    return int(tokens[5] if len(tokens) == 9 else tokens[7])


class _Puller:
    """The open pull request and what it delivered that the reader has not taken yet."""

    def __init__(self, bus: Bus, subject: str, inbox: str, after: int, end_seq: int) -> None:
        self.bus = bus
        self.subject = subject
        self.inbox = inbox
        self.end_seq = end_seq
        self.last_seq = after
        self.buffer: list[LogMessage] = []
        # Messages the open request may still deliver; 0: no request open.
        self.wanted = 0
        # No more to ask for: the log held no more, or the end of the range arrived.
        self.done = False
        self.error: Exception | None = None
        self.ready = asyncio.Event()

    async def pull(self) -> None:
        # Never more than the range still needs (sequences only grow), but at least one: a message past
        # end_seq tells the caller that the ones before it were deleted.
        batch = max(1, min(PULL_BATCH, self.end_seq - self.last_seq))
        self.wanted = batch
        request = {"batch": batch, "no_wait": True, "max_bytes": PULL_MAX_BYTES}
        await self.bus.nc.publish(self.subject, json.dumps(request).encode(), reply=self.inbox)

    async def on_message(self, msg: Msg) -> None:
        if not msg.reply:
            # A status. "Batch Completed" follows a request whose count the messages already completed,
            # so it says nothing; any other one ends the open request short.
            headers = msg.headers or {}
            status = (headers.get(api.Header.STATUS.value, ""), headers.get(api.Header.DESCRIPTION.value, ""))
            if status == _COMPLETED:
                return
            self.wanted = 0
            if status[0] in _NO_MORE:
                self.done = True
            elif status != _MAX_BYTES:
                self.done = True
                self.error = PullFailed(f"pull from {EVENTS_STREAM} ended with {' '.join(status)}")
        else:
            seq = stream_seq(msg.reply)
            self.buffer.append(LogMessage(seq, msg.subject, msg.data))
            self.last_seq = seq
            self.wanted -= 1
            if seq >= self.end_seq:
                self.done = True
            if self.wanted > 0:
                return
        if not self.done and len(self.buffer) < PULL_BATCH:
            # Ask for the next batch now, so the server sends it while the reader folds this one.
            await self.pull()
        self.ready.set()


async def read_range(bus: Bus, after: int, end_seq: int) -> AsyncIterator[list[LogMessage]]:
    """The stored events after sequence `after`, in order, in batches, until the one at or past `end_seq`
    (included: a first one past it shows the ones before it were deleted) or the end of the log.

    Use it under `contextlib.aclosing`, so its consumer is removed when a caller stops early."""
    config = api.ConsumerConfig(
        deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1,
        filter_subject=f"{EVENTS_SUBJECT_PREFIX}.>",
        ack_policy=api.AckPolicy.NONE,
        # Removed below; this only covers a reader that died mid-read.
        inactive_threshold=60.0,
        mem_storage=True,
        num_replicas=1,
    )
    info = await bus.js.add_consumer(EVENTS_STREAM, config=config)
    inbox = bus.nc.new_inbox()
    puller = _Puller(bus, f"$JS.API.CONSUMER.MSG.NEXT.{EVENTS_STREAM}.{info.name}", inbox, after, end_seq)
    sub = await bus.nc.subscribe(inbox, cb=puller.on_message)
    try:
        await puller.pull()
        while True:
            await asyncio.wait_for(puller.ready.wait(), REPLY_TIMEOUT)
            puller.ready.clear()
            batch, puller.buffer = puller.buffer, []
            if puller.error is not None:
                raise puller.error
            if batch:
                yield batch
            if puller.done and not puller.buffer:
                return
            if puller.wanted == 0 and not puller.done:
                await puller.pull()
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await bus.js.delete_consumer(EVENTS_STREAM, info.name)
