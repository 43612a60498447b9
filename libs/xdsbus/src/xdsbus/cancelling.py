"""Cancelling a task that must end before its caller goes on (a watch loop, a report writer).

nats-py's publish swallows a cancellation that arrives while it queues the message, so one `cancel()`
can leave the task running: a watch loop would go on polling a source its process no longer leads."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_until_done(task: asyncio.Future[Any], pause: float = 0.1) -> None:
    """Cancel `task`, again every `pause` seconds, until it has ended; its outcome is left to read."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=pause)
