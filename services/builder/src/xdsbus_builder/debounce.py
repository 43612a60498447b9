"""When the builder cuts a version: the debounce decision as a pure function of the clock.

Leading edge: a change folded after a quiet period (no version cut for `quiet` seconds before it) is
published at once, alone, so one change reaches Envoy without waiting for the quiet window
(docs/architecture.md, "Debounce and versions"). Changes folded while a version is in flight, or within
`quiet` seconds after one, are batched as Istio batches every change (PILOT_DEBOUNCE_AFTER and
PILOT_DEBOUNCE_MAX, docs/xds-protocol.md §4): published together once no event came for `quiet` seconds
after the newest pending one, or `max_delay` seconds after the oldest, whichever is first. So a burst
costs one version per window, not one per change. Like Istio's debounce() it stands alone, so it is
tested without a bus or a clock (tests/builder/test_debounce.py).

While a source resyncs (its watcher lists everything after a start or a new term: sync_begin, an upsert
of every object, sync_end), no version is cut for changes of resyncing sources alone until the resync ends
or `RESYNC_HOLD` seconds after it began, whichever is first: as Istio serves nothing before its informers
have synced, a cold start of 60k objects is then a handful of versions instead of one per `max_delay`, each
of which every Envoy would apply in full (bench cold_load). Changes of any other source are published as
usual, and take the held ones with them.

Which versions exist depends on timing; what a version holds does not (docs/design.md §5): it is named
by the last event folded into it.
"""

from __future__ import annotations

import dataclasses

# The shortest wait for more events: with a quiet period of 0, a batch still takes what arrives
# within a millisecond.
MIN_WAIT = 0.001
# Seconds after its sync_begin a resync stops holding versions back, ended or not (a watcher that died
# mid-resync must not hold its source's changes for longer).
RESYNC_HOLD = 10.0


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
    held_until: float | None = None,
) -> Decision:
    """The decision at `now` for pending events folded first at `first` and last at `last` (None:
    nothing pending), the previous version having been cut at `published` (when its publish ended;
    None: none yet this term). A caller whose wait for events ran out empty passes the `until` it
    waited for as `now` (or later): that wait was the quiet period. `held_until`: while every pending
    change comes from a source whose resync is open, when the hold of the latest of those resyncs ends
    (its sync_begin + RESYNC_HOLD); None otherwise."""
    if first is None or last is None:
        return IDLE
    if held_until is not None and now < held_until:
        return Decision(publish=False, until=held_until)
    if published is None or first >= published + max(quiet, MIN_WAIT):
        # The first pending change came after a quiet period: it goes out at once.
        return PUBLISH
    if now >= first + max_delay:
        return PUBLISH
    until = max(last + MIN_WAIT, min(last + quiet, first + max_delay))
    if now >= until:
        return PUBLISH
    return Decision(publish=False, until=until)


def held_until(resyncs: dict[tuple[str, str], float], sources: set[str], now: float) -> float | None:
    """When the open resyncs stop holding the pending changes back: `resyncs` maps each open resync,
    (source, kind), to when its sync_begin was folded (those older than RESYNC_HOLD are dropped from
    it), `sources` are the sources of the pending changes. None when nothing holds them: a pending
    change of a source without an open resync, or no open resync at all."""
    for key in [key for key, began in resyncs.items() if began + RESYNC_HOLD <= now]:
        del resyncs[key]
    holds: dict[str, float] = {}
    for (source, _), began in resyncs.items():
        holds[source] = max(holds.get(source, began), began)
    if not holds or any(source not in holds for source in sources):
        return None
    return max(holds[source] for source in sources or holds) + RESYNC_HOLD
