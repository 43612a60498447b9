"""A NATS publish that never waits: the message joins nats-py's outgoing buffer, which its flusher writes.

nats-py's `Client.publish` is a coroutine that costs more than the JetStream publish it sends when a
watcher publishes a cold list (issue 16): it validates the subjects, runs each header value through
`str.translate`, and may wait for a forced flush. `append` builds the same command (the NATS protocol:
`HPUB <subject> <reply> <header bytes> <total bytes>`, the headers, the payload; without headers
`PUB <subject> <reply> <bytes>` and the payload) and appends it to the client's buffer as
`Client.publish` does, then wakes the client's flusher, which writes everything buffered in one go. It
reaches into the client's private buffer (`_pending`, `_flush_queue`), so it is used only with nats-py's
own `Client`, connected, with its flusher running; `usable` says so, and anything else goes through
`Client.publish`.

`usable` is false once the buffer holds nats-py's pending limit (2 MiB by default): the caller then
goes through `Client.publish`, which waits for the buffer to be written, so large bodies are never
piled up in memory; the callers also keep at most a window of publishes in flight.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from nats.aio.client import Client
from nats.errors import BadHeaderError, MaxPayloadError

# As nats-py's: a header name is an HTTP token (RFC 9110).
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# Header names checked already (a watcher sends one, Nats-Msg-Id), as sent; a few are enough.
_NAMES: dict[str, str] = {}
_NAMES_KEPT = 64


def usable(nc: Any) -> bool:
    """Whether `append` can publish on `nc` now: a connected nats-py Client whose flusher runs."""
    if type(nc) is not Client or not nc.is_connected:
        return False
    flusher = getattr(nc, "_flusher_task", None)
    return (
        isinstance(flusher, asyncio.Task)
        and not flusher.done()
        and isinstance(getattr(nc, "_pending", None), list)
        and isinstance(getattr(nc, "_flush_queue", None), asyncio.Queue)
        # Past nats-py's pending limit its own publish waits for the buffer to be written: the
        # backpressure large bodies need.
        and getattr(nc, "_pending_data_size", 0) < getattr(nc, "_max_pending_size", 0)
    )


def append(
    nc: Client, subject: str, reply: str, payload: bytes, headers: Mapping[str, str] | None = None
) -> None:
    """Publish as `nc.publish(subject, payload, reply=reply, headers=headers)` would, header values
    stripped and their line breaks made spaces as it does, without waiting. Only when `usable(nc)`;
    `subject` and `reply` must be valid subjects (no white space)."""
    if len(payload) > nc.max_payload:
        raise MaxPayloadError
    if headers:
        command = _hpub(subject, reply, payload, headers)
    else:
        command = b"".join((f"PUB {subject} {reply} {len(payload)}\r\n".encode(), payload, b"\r\n"))
    nc._pending.append(command)
    nc._pending_data_size += len(command)
    stats = nc.stats
    stats["out_msgs"] += 1
    stats["out_bytes"] += len(payload)
    flush_queue = nc._flush_queue
    assert flush_queue is not None
    if flush_queue.empty():
        # The flusher writes everything buffered when it takes this; it sets the future once written.
        flush_queue.put_nowait(asyncio.get_running_loop().create_future())


def _hpub(subject: str, reply: str, payload: bytes, headers: Mapping[str, str]) -> bytes:
    lines = ["NATS/1.0\r\n"]
    for name, value in headers.items():
        checked = _NAMES.get(name)
        if checked is None:
            checked = _checked_name(name)
        if checked:
            value = value.strip()
            if "\r" in value or "\n" in value:
                value = value.replace("\r", " ").replace("\n", " ")
            lines.append(f"{checked}: {value}\r\n")
    lines.append("\r\n")
    header = "".join(lines).encode()
    size = len(header)
    return b"".join(
        (f"HPUB {subject} {reply} {size} {size + len(payload)}\r\n".encode(), header, payload, b"\r\n")
    )


def _checked_name(name: str) -> str:
    """The header name as sent ("" for none: left out, as nats-py does); remembered in `_NAMES`."""
    checked = name.strip()
    if checked and not _HEADER_NAME.fullmatch(checked):
        raise BadHeaderError(checked)
    if len(_NAMES) < _NAMES_KEPT:
        _NAMES[name] = checked
    return checked
