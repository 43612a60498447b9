"""Ending a builder's term within bounds: its background tasks and, when the lease is lost, the leader
itself (issue 14: a leader that waited without a deadline on a NATS fault held its process for minutes
after losing the lease; docs/operating-on-a-cluster.md)."""

from __future__ import annotations

import asyncio
import logging

from xdsbus.transient import describe

log = logging.getLogger(__name__)

# Seconds the end of a term waits for each background task (checkpoint, base, collection), and for a
# cancelled leader.
TEARDOWN_WAIT = 10.0


async def settle(task: asyncio.Task[None], what: str) -> None:
    """Let a background task of the ending term finish, for at most TEARDOWN_WAIT seconds, then
    cancel it (a checkpoint not saved only costs a longer refold; a base or sweep is done next term)."""
    done, _ = await asyncio.wait({task}, timeout=TEARDOWN_WAIT)
    if not done:
        log.warning("%s still running after %.0fs at the end of the term: cancelled", what, TEARDOWN_WAIT)
        task.cancel()


async def end_term(leader: asyncio.Task[None], term: int) -> None:
    """Cancel the leader of a lost term and wait for it to end; the cancel is repeated, because
    nats-py's publish can swallow one that arrives at the wrong moment. A leader that does not end is
    reported and left behind: the fence refuses whatever it would still publish."""
    for _ in range(3):
        leader.cancel()
        done, _ = await asyncio.wait({leader}, timeout=TEARDOWN_WAIT)
        if done:
            if not leader.cancelled() and leader.exception() is not None:
                log.warning("term %d ended with %s", term, describe(leader.exception()))
            return
    log.error(
        "the leader of term %d did not stop within %.0fs; standing by regardless", term, 3 * TEARDOWN_WAIT
    )
