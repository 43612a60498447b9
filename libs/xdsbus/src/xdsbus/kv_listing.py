"""The keys stored in a KV bucket and the values of the live ones, complete. The keys are listed from
the subjects of the bucket's stream, never by nats-py's `KeyValue.keys()`, whose watch ends at its first
"nothing pending" mark and can leave out keys written just before (nats-io/nats.py#842; seen in our CI).

The server answers `$JS.API.STREAM.INFO.<stream>` with a `subjects_filter` from its store at that
instant, but with at most a page of subjects (JSMaxSubjectDetails, 100,000), sorted, from `offset`;
nats-py's `stream_info` sends no offset, so the request is made here, page after page. Consecutive
pages overlap by one subject: a page that starts past the previous page's last subject shows that
subjects before it were removed in between, so that others may have slid into the page already read,
and the listing starts over. A key stored for the whole listing is therefore always in it.

The values are read in bulk by a consumer pushing the last message of each subject (a `KeyValue.get`
per key took about 13 s for 100,000 keys, this about 1.5 s, at load ~3) until every listed key has
come or the consumer says nothing more is pending. That mark is not trusted to be complete
(nats-io/nats.py#995 saw it reach zero and rise again on a cluster): a listed key it has not brought is
read by name."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Mapping
from typing import Any

import msgspec
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import APIError, KeyNotFoundError
from nats.js.kv import KV_DEL, KV_MARKER_REASON, KV_OP, KV_PURGE

from xdsbus.bus import Bus

API_TIMEOUT = 10.0
# Listings started over (subjects removed while paging) before giving up.
ATTEMPTS = 5
# How long the values are awaited from the consumer; keys it has not brought by then are read one by one.
READ_TIMEOUT = 30.0


class _State(msgspec.Struct):
    subjects: dict[str, int] | None = None


class _Page(msgspec.Struct):
    state: _State | None = None
    total: int = 0
    offset: int = 0
    limit: int = 0
    error: dict[str, Any] | None = None


class ListingUnstable(Exception):
    """The bucket's subjects kept being removed while they were paged through."""


async def stored_keys(bus: Bus, bucket: str, key_filter: str = ">") -> list[str]:
    """Every key of KV `bucket` matching `key_filter` (a KV key pattern), sorted. A key whose last entry
    is a delete or purge marker is listed too (its subject stays in the stream): `KeyValue.get` of it
    raises KeyNotFoundError."""
    prefix = f"$KV.{bucket}."
    return [s.removeprefix(prefix) for s in await stream_subjects(bus, f"KV_{bucket}", prefix + key_filter)]


async def stream_subjects(bus: Bus, stream: str, subjects_filter: str) -> list[str]:
    """Every subject of `stream` matching `subjects_filter` that holds a message, sorted, however many."""
    for _ in range(ATTEMPTS):
        subjects = await _subjects(bus, stream, subjects_filter)
        if subjects is not None:
            return sorted(subjects)
    raise ListingUnstable(f"the subjects of {stream} kept changing while they were listed")


def is_marker(headers: Mapping[str, str] | None) -> bool:
    """Whether a KV entry's headers make it a marker, not a value: a delete or purge (or the server's
    TTL marker), after which the key holds nothing."""
    if not headers:
        return False
    return headers.get(KV_OP) in (KV_DEL, KV_PURGE) or KV_MARKER_REASON in headers


async def live_values(bus: Bus, bucket: str, key_filter: str = ">") -> dict[str, bytes]:
    """The value of every key of KV `bucket` matching `key_filter` that is neither deleted nor purged:
    each key stored when this is called is in it (with its value then, or a newer one), however many."""
    listed = await stored_keys(bus, bucket, key_filter)
    if not listed:
        return {}
    unseen = set(listed)
    values: dict[str, bytes] = {}
    prefix = f"$KV.{bucket}."
    ended = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        key = msg.subject.removeprefix(prefix)
        unseen.discard(key)
        if is_marker(msg.headers):
            values.pop(key, None)
        else:
            values[key] = msg.data
        if not unseen or msg.metadata.num_pending == 0:
            ended.set()

    stream = f"KV_{bucket}"
    inbox = bus.nc.new_inbox()
    sub = await bus.nc.subscribe(inbox, cb=on_message)
    consumer = f"kv-read-{secrets.token_hex(8)}"  # named, so that it can be removed below by name
    try:
        info = await bus.js.add_consumer(
            stream,
            config=api.ConsumerConfig(
                name=consumer,
                deliver_subject=inbox,
                filter_subject=prefix + key_filter,
                deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                ack_policy=api.AckPolicy.NONE,
                mem_storage=True,
                num_replicas=1,
                # Removed below; this only covers a reader that died mid-read.
                inactive_threshold=60.0,
            ),
        )
        if info.num_pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), READ_TIMEOUT)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await bus.js.delete_consumer(stream, consumer)
    # Keys the consumer did not bring (removed since they were listed, or behind a "nothing pending" mark
    # that came early), read one by one.
    if not unseen:
        return values
    kv = await bus.js.key_value(bucket)
    for key in sorted(unseen):
        try:
            entry = await kv.get(key)
        except KeyNotFoundError:
            values.pop(key, None)
            continue
        values[key] = entry.value or b""
    return values


async def _subjects(bus: Bus, stream: str, subjects_filter: str) -> set[str] | None:
    """The stream's subjects matching the filter, or None when subjects were removed between pages."""
    found: set[str] = set()
    offset = 0
    last: str | None = None
    while True:
        page = await _page(bus, stream, subjects_filter, offset)
        subjects = sorted((page.state.subjects if page.state else None) or {})
        if last is not None and (not subjects or subjects[0] > last):
            return None
        found.update(subjects)
        # One page (the common case), or the last one.
        if page.offset + len(subjects) >= page.total:
            return found
        if len(subjects) < 2:  # no page to overlap with: the listing shrank under us
            return None
        last = subjects[-1]
        offset = page.offset + len(subjects) - 1


async def _page(bus: Bus, stream: str, subjects_filter: str, offset: int) -> _Page:
    request = msgspec.json.encode({"subjects_filter": subjects_filter, "offset": offset})
    reply = await bus.nc.request(f"$JS.API.STREAM.INFO.{stream}", request, timeout=API_TIMEOUT)
    page = msgspec.json.decode(reply.data, type=_Page)
    if page.error is not None:
        APIError.from_error(page.error)
    return page
