"""Exponential backoff with jitter for reconnect loops."""

from __future__ import annotations

import asyncio
import random


class Backoff:
    """Delays of base·2^n capped at `cap`, with full jitter so replicas do not retry in lockstep."""

    def __init__(self, base: float = 0.2, cap: float = 30.0) -> None:
        self.base = base
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        """The next delay; grows until reset()."""
        ceiling = min(self.cap, self.base * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        """Call after a success."""
        self.attempt = 0

    async def wait(self) -> None:
        """Sleep for the next delay."""
        await asyncio.sleep(self.next_delay())
