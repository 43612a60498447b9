"""When the builder cuts a version: the debounce decision as a pure function of the clock.

Events are folded as they arrive and published together: once no event came for `quiet` seconds
after the newest pending one, or `max_delay` seconds after the oldest, whichever is first (Istio's
PILOT_DEBOUNCE_AFTER and PILOT_DEBOUNCE_MAX, docs/xds-protocol.md §4). Like Istio's debounce() it
stands alone, so it is tested without a bus or a clock (tests/builder/test_debounce.py).
"""

from __future__ import annotations

import dataclasses

# The shortest wait for more events: with a quiet period of 0, a batch still takes what arrives
# within a millisecond.
MIN_WAIT = 0.001


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """Publish now, or wait for events until `until` (None: nothing is pending, no deadline)."""

    publish: bool
    until: float | None = None


IDLE = Decision(publish=False)
PUBLISH = Decision(publish=True)


def decide(
    first: float | None, last: float | None, now: float, *, quiet: float, max_delay: float
) -> Decision:
    """The decision at `now` for pending events folded first at `first` and last at `last` (None:
    nothing pending). A caller whose wait for events ran out empty passes the `until` it waited for
    as `now` (or later): that wait was the quiet period."""
    if first is None or last is None:
        return IDLE
    if now >= first + max_delay:
        return PUBLISH
    until = max(last + MIN_WAIT, min(last + quiet, first + max_delay))
    if now >= until:
        return PUBLISH
    return Decision(publish=False, until=until)
