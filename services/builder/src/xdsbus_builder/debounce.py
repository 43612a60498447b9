"""When the builder cuts a version: the debounce decision as a pure function of the clock.

Leading edge: a change folded after a quiet period (no version cut for `quiet` seconds before it) is
published at once, alone, so one change reaches Envoy without waiting for the quiet window
(docs/architecture.md, "Debounce and versions"). Changes folded while a version is in flight, or within
`quiet` seconds after one, are batched as Istio batches every change (PILOT_DEBOUNCE_AFTER and
PILOT_DEBOUNCE_MAX, docs/xds-protocol.md §4): published together once no event came for `quiet` seconds
after the newest pending one, or `max_delay` seconds after the oldest, whichever is first. So a burst
costs one version per window, not one per change. Like Istio's debounce() it stands alone, so it is
tested without a bus or a clock (tests/builder/test_debounce.py).

Which versions exist depends on timing; what a version holds does not (docs/design.md §5): it is named
by the last event folded into it.
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
    first: float | None,
    last: float | None,
    now: float,
    *,
    quiet: float,
    max_delay: float,
    published: float | None,
) -> Decision:
    """The decision at `now` for pending events folded first at `first` and last at `last` (None:
    nothing pending), the previous version having been cut at `published` (when its publish ended;
    None: none yet this term). A caller whose wait for events ran out empty passes the `until` it
    waited for as `now` (or later): that wait was the quiet period."""
    if first is None or last is None:
        return IDLE
    if published is None or first >= published + max(quiet, MIN_WAIT):
        # The first pending change came after a quiet period: it goes out at once.
        return PUBLISH
    if now >= first + max_delay:
        return PUBLISH
    until = max(last + MIN_WAIT, min(last + quiet, first + max_delay))
    if now >= until:
        return PUBLISH
    return Decision(publish=False, until=until)
