"""The debounce's leading edge, through a real builder and NATS, read from the ledger's records.

A change that comes after a quiet period is published at once, alone: its version's record covers that
one event. Changes that come while that version is in flight are batched into the next version. Which
versions exist is the only thing timing decides (docs/design.md §5); the records show it without timing
anything.
"""

from __future__ import annotations

import asyncio

from tests.builder.support import (
    Marker,
    assert_chain,
    head_version,
    records,
    running_builder,
    wait_for_caught_up,
    wait_for_version,
)
from xdsbus.bus import Bus

# Long enough that three changes published back to back always fall in one window on a busy machine;
# the max window is longer, so only the quiet period closes a batch.
QUIET, MAX = 1.0, 10.0


async def _quiet_period() -> None:
    """No change for one quiet window: the input under test, not a wait for the builder (which has
    published everything when this is called)."""
    await asyncio.sleep(QUIET)


async def _ranges_after(bus: Bus, version: int) -> list[tuple[int, int]]:
    return [(r.first_seq, r.last_seq) for r in await records(bus) if r.version > version]


async def test_a_change_after_a_quiet_period_is_a_version_of_its_own_and_a_burst_is_batched(bus: Bus) -> None:
    marker = Marker(bus)
    async with running_builder(bus, debounce_quiet=QUIET, debounce_max=MAX):
        await marker.setup()
        await wait_for_caught_up(bus)

        for _ in range(2):
            await _quiet_period()
            before = await head_version(bus)
            lone = await marker.bump()
            # Published while the lone change's version is in flight (or just cut): one batch.
            burst = [await marker.bump() for _ in range(3)]
            await wait_for_version(bus, burst[-1])
            assert await _ranges_after(bus, before) == [(lone, lone), (burst[0], burst[-1])]

        assert_chain(await records(bus))
