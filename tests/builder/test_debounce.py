"""The builder's debounce decision (xdsbus_builder/debounce.py), without a bus or a clock."""

from __future__ import annotations

import pytest

from xdsbus_builder.debounce import IDLE, MIN_WAIT, PUBLISH, Decision, decide

QUIET, MAX = 0.1, 1.0


def at(now: float, first: float | None, last: float | None) -> Decision:
    return decide(first, last, now, quiet=QUIET, max_delay=MAX)


def test_nothing_pending_waits_without_a_deadline():
    assert at(5.0, None, None) == IDLE
    assert IDLE.until is None and not IDLE.publish


def test_a_new_event_waits_for_the_quiet_period():
    assert at(10.0, 10.0, 10.0) == Decision(publish=False, until=pytest.approx(10.1))


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


def test_a_wait_lasts_at_least_a_millisecond():
    decision = decide(10.0, 10.0, 10.0, quiet=0.0, max_delay=MAX)
    assert decision == Decision(publish=False, until=pytest.approx(10.0 + MIN_WAIT))
    assert decide(10.0, 10.0, 10.0 + MIN_WAIT, quiet=0.0, max_delay=MAX) == PUBLISH


def test_a_max_delay_already_past_publishes_at_once():
    assert decide(10.0, 10.0, 10.0, quiet=QUIET, max_delay=0.0) == PUBLISH
