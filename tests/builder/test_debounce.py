"""The builder's debounce decision (xdsbus_builder/debounce.py), without a bus or a clock."""

from __future__ import annotations

import pytest

from xdsbus_builder.debounce import IDLE, MIN_WAIT, PUBLISH, Decision, decide

QUIET, MAX = 0.1, 1.0
# The previous version was cut just before the pending events: they are batched (the trailing edge).
JUST_PUBLISHED = 9.99


def at(
    now: float, first: float | None, last: float | None, published: float | None = JUST_PUBLISHED
) -> Decision:
    return decide(first, last, now, quiet=QUIET, max_delay=MAX, published=published)


def test_nothing_pending_waits_without_a_deadline():
    assert at(5.0, None, None) == IDLE
    assert at(5.0, None, None, published=None) == IDLE
    assert IDLE.until is None and not IDLE.publish


def test_a_change_after_a_quiet_period_publishes_at_once():
    assert at(10.0, 10.0, 10.0, published=None) == PUBLISH
    assert at(10.0, 10.0, 10.0, published=10.0 - QUIET) == PUBLISH
    assert at(10.0, 10.0, 10.0, published=3.0) == PUBLISH


def test_a_change_within_the_quiet_window_after_a_version_waits_for_the_quiet_period():
    # Folded while the previous version was in flight, or just after it was cut.
    assert at(10.0, 10.0, 10.0) == Decision(publish=False, until=pytest.approx(10.1))
    assert at(10.0, 10.0, 10.0, published=10.0 - QUIET + 0.001) == Decision(
        publish=False, until=pytest.approx(10.1)
    )


def test_the_leading_edge_looks_at_the_first_pending_change_only():
    # The batch opened inside the window stays a batch, however long it lasts.
    assert at(10.5, 10.0, 10.45) == Decision(publish=False, until=pytest.approx(10.55))


def test_quiet_period_without_an_event_publishes():
    assert at(10.1, 10.0, 10.0) == PUBLISH
    assert at(10.05, 10.0, 10.0).until == pytest.approx(10.1)


def test_every_event_restarts_the_quiet_period():
    assert at(10.2, 10.0, 10.15) == Decision(publish=False, until=pytest.approx(10.25))
    assert at(10.25, 10.0, 10.15) == PUBLISH


def test_events_that_keep_coming_publish_at_the_max_delay():
    # An event every 50 ms never leaves 100 ms of quiet: the oldest pending event bounds the wait.
    first = 10.0
    for step in range(1, 19):
        t = first + step * 0.05
        decision = at(t, first, t)
        assert not decision.publish
        assert decision.until == pytest.approx(min(t + QUIET, first + MAX))
    assert at(first + MAX, first, first + 0.95) == PUBLISH
    assert at(first + 0.96, first, first + 0.95).until == pytest.approx(first + MAX)


def test_a_burst_after_a_quiet_period_is_one_lone_version_then_batches():
    # The burst's first change goes alone; the changes folded while it is in flight, and every batch
    # cut after it, are batched by the quiet and max windows until the burst ends.
    assert at(20.0, 20.0, 20.0, published=10.0) == PUBLISH
    published = 20.004  # the lone version's publish ended
    first = 20.005
    for t in (20.005, 20.2, 20.6, 21.0):
        assert not at(t, first, t, published).publish
    assert at(first + MAX, first, 21.0, published) == PUBLISH
    published = first + MAX + 0.003
    assert at(published + 0.001, published + 0.001, published + 0.001, published) == Decision(
        publish=False, until=pytest.approx(published + 0.001 + QUIET)
    )


def test_a_wait_lasts_at_least_a_millisecond():
    decision = decide(10.0, 10.0, 10.0, quiet=0.0, max_delay=MAX, published=10.0)
    assert decision == Decision(publish=False, until=pytest.approx(10.0 + MIN_WAIT))
    assert decide(10.0, 10.0, 10.0 + MIN_WAIT, quiet=0.0, max_delay=MAX, published=10.0) == PUBLISH


def test_without_a_quiet_period_a_change_a_millisecond_after_a_version_is_leading():
    assert decide(10.0, 10.0, 10.0, quiet=0.0, max_delay=MAX, published=10.0 - MIN_WAIT) == PUBLISH


def test_a_max_delay_already_past_publishes_at_once():
    assert decide(10.0, 10.0, 10.0, quiet=QUIET, max_delay=0.0, published=JUST_PUBLISHED) == PUBLISH
