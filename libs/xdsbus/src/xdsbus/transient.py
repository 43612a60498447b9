"""Which NATS errors pass by themselves, and retrying an operation through them (issue 14).

On a cluster a request can time out while a stream's leader is elected, find no responders while
JetStream restarts, or be told the cluster is temporarily unavailable; each passes within seconds. A
refusal (wrong last sequence, a missing key, a permission) never passes by waiting, so it is not
transient and reaches the caller at once: fencing errors stay fencing errors."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from nats.errors import (
    ConnectionReconnectingError,
    FlushTimeoutError,
    NoRespondersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError, ServiceUnavailableError

from xdsbus.backoff import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")

# JetStream API error codes of a cluster between leaders: "cluster not active" (10006), "JetStream
# system temporarily unavailable" (10008), "not the leader" (10009), "stream is offline" (10118).
_LEADERLESS_CODES = frozenset({10006, 10008, 10009, 10118})

_TRANSIENT_TYPES = (
    TimeoutError,
    NatsTimeoutError,
    FlushTimeoutError,
    NoRespondersError,
    NoStreamResponseError,
    ServiceUnavailableError,
    ConnectionReconnectingError,
    StaleConnectionError,
    OutboundBufferLimitError,
)

# Default cap of one wait between attempts; about a Raft election.
RETRY_CAP = 2.0


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` is a NATS fault that passes by itself (a timeout, 503 no responders, a leader
    change), as opposed to a refusal."""
    if isinstance(exc, _TRANSIENT_TYPES):
        return True
    if isinstance(exc, APIError):
        return getattr(exc, "code", None) == 503 or getattr(exc, "err_code", None) in _LEADERLESS_CODES
    return False


async def retry_transient(
    operation: Callable[[], Awaitable[T]],
    *,
    what: str,
    within: float | None = None,
    base: float = 0.1,
    cap: float = RETRY_CAP,
) -> T:
    """`operation()`, called again after a jittered, growing pause while it fails with a transient
    error (`is_transient`), for up to `within` seconds (None: as long as it takes); then the last error
    is raised. Other errors are raised at once. Logs one warning per retry, naming `what`."""
    backoff = Backoff(base=base, cap=cap)
    deadline = None if within is None else time.monotonic() + within
    while True:
        try:
            return await operation()
        except Exception as exc:
            if not is_transient(exc):
                raise
            delay = backoff.next_delay()
            if deadline is not None and time.monotonic() + delay > deadline:
                raise
            log.warning("%s: %s; retrying in %.1fs", what, describe(exc), delay)
            await asyncio.sleep(delay)


def describe(exc: BaseException) -> str:
    """A transient error's short text (nats-py's timeouts have none)."""
    return (str(exc) or type(exc).__name__).removeprefix("nats: ")
