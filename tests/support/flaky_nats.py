"""A real NATS connection whose JetStream publishes of events fail on demand, in the ways a bus fails.

Everything else goes through untouched. For the publishes `failing(n)` names (n counts event publishes
from 1), one fault instead of a plain send:

- `send_failed`: the client refuses to send (its buffer is full while reconnecting);
- `ack_lost`:    stored by the server, but the answer goes nowhere;
- `log_full`:    the server's answer is err 10077 (the event log at its size cap), nothing stored;
- `unanswered`:  nothing is sent and nothing answers;
- `send_stuck`:  the send itself never returns (nats-py waiting on a flush that a lost connection never
                 completes).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

from nats.errors import OutboundBufferLimitError

MODES = ("send_failed", "ack_lost", "log_full", "unanswered", "send_stuck")
_LOG_FULL = b'{"error":{"code":503,"err_code":10077,"description":"maximum bytes exceeded"}}'


class FlakyNats:
    """Wraps a connected nats-py client."""

    def __init__(
        self, nc: Any, failing: Callable[[int], str | None], subjects: str = "xdsbus.events."
    ) -> None:
        self._nc = nc
        self._failing = failing
        self._subjects = subjects
        self.calls = 0
        self.failures: Counter[str] = Counter()
        self.tried: list[str] = []  # Nats-Msg-Id of every publish of an event, failed or not

    def __getattr__(self, name: str) -> Any:
        return getattr(self._nc, name)

    async def publish(
        self, subject: str, payload: bytes = b"", reply: str = "", headers: dict[str, str] | None = None
    ) -> None:
        if not (subject.startswith(self._subjects) and reply and headers):
            return await self._nc.publish(subject, payload, reply=reply, headers=headers)
        self.calls += 1
        self.tried.append(headers["Nats-Msg-Id"])
        mode = self._failing(self.calls)
        if mode is None:
            return await self._nc.publish(subject, payload, reply=reply, headers=headers)
        self.failures[mode] += 1
        if mode == "send_failed":
            raise OutboundBufferLimitError
        if mode == "ack_lost":
            await self._nc.publish(subject, payload, reply=self._nc.new_inbox(), headers=headers)
        elif mode == "log_full":
            await self._nc.publish(reply, _LOG_FULL)
        elif mode == "send_stuck":
            await asyncio.Event().wait()
        elif mode != "unanswered":
            raise ValueError(f"unknown fault {mode!r}")
        return None


def every(n: int) -> Callable[[int], str | None]:
    """Every n-th publish fails, each of MODES in turn."""
    return lambda call: None if call % n else MODES[(call // n) % len(MODES)]
