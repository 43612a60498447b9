"""Batched direct gets: the newest message of many subjects of a stream in one request.

A JetStream direct get (`$JS.API.DIRECT.GET.<stream>`, on streams with `allow_direct`) with a
`multi_last` list of subjects is answered by any replica with the newest message of each subject that
has one, as separate messages to the reply subject, then a `204 EOB` status whose `Nats-Num-Pending`
says how many matched but were not sent (the request's `max_bytes` was reached). A subject with no
message is simply not answered; `404 No Results` says none matched. The server answers at most 1024
subjects per request (`413 Too Many Results` beyond), so callers send at most that many.

One request replaces a request and a JSON reply per message (nats-py's `get_msg`): for an edge loading a
version of 40k resource bodies, about 40 requests instead of 40k (bench cold_load).
"""

from __future__ import annotations

import asyncio
import json
from typing import NamedTuple

from nats.aio.client import Client
from nats.aio.msg import Msg

# The largest answer asked for per request: bounds what a request holds in memory, and what nats-py
# buffers for the subscription (its slow-consumer limit is far above it).
MAX_BYTES = 8 << 20
# Seconds without the end of an answer before the request is given up.
TIMEOUT = 10.0


class Entry(NamedTuple):
    """One subject's newest message: its headers (the server's Nats-* ones included) and data."""

    headers: dict[str, str] | None
    data: bytes


class _Answer:
    """What one request's reply subject received: the messages, then the status that ends it."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self.end: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def on_message(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status:
            if not self.end.done():
                self.end.set_result(headers or {})
            return
        subject = headers.get("Nats-Subject") if headers else None
        if subject:
            self.entries[subject] = Entry(headers, msg.data)


async def last_of(nc: Client, stream: str, subjects: list[str]) -> dict[str, Entry]:
    """The newest message of each of `subjects` (at most 1024) that has one, by subject. A subject the
    answering replica holds no message for is absent; so is every subject when the stream does not
    allow direct gets or the request fails (no responders, timeout): callers read what is absent some
    other way."""
    entries: dict[str, Entry] = {}
    remaining = subjects
    while remaining:
        answer = _Answer()
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox, cb=answer.on_message)
        try:
            request = {"multi_last": remaining, "max_bytes": MAX_BYTES}
            await nc.publish(f"$JS.API.DIRECT.GET.{stream}", json.dumps(request).encode(), reply=inbox)
            end = await asyncio.wait_for(answer.end, TIMEOUT)
        except TimeoutError:
            end = {}
        finally:
            await sub.unsubscribe()
        entries.update(answer.entries)
        if (
            end.get("Status") != "204"
            or int(end.get("Nats-Num-Pending", "0") or 0) == 0
            or not answer.entries
        ):
            # Complete, or nothing more to be had from this replica.
            break
        # The answer stopped at max_bytes: ask again for what it did not reach.
        remaining = [subject for subject in remaining if subject not in entries]
    return entries
