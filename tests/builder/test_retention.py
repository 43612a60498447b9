"""Retention follows checkpoints (docs/design.md §4): which checkpoints are kept (pure, injected times),
and, on a real nats-server, the floors in KV xdsbus_retention and the purge below the lowest of them."""

from __future__ import annotations

import asyncio
import itertools

import pytest
from nats.js import api
from nats.js.errors import NoKeysError
from nats.js.kv import KeyValue

from tests.support.objects import service
from tests.support.sources import ScriptedSource
from xdsbus import kv_listing, status_store
from xdsbus.bus import RETENTION_BUCKET, Bus
from xdsbus.events import EVENTS_STREAM
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import checkpoints
from xdsbus.ledger.checkpoints import Stored
from xdsbus_builder import gaps
from xdsbus_builder.retention import ALARM_KEY, DAY, Retention, floor_of, kept, lowest_floor, record_floor

NOW = 1_800_000_000.0  # a fixed instant; no test reads the clock


def _four_a_day(days: int) -> list[Stored]:
    """Checkpoints at 01:00, 07:00, 13:00 and 19:00 UTC of each of the `days` days before NOW's."""
    stored = []
    seq = 10
    for day in range(days, 0, -1):
        for hour in (1, 7, 13, 19):
            stored.append(Stored(seq, (NOW // DAY - day) * DAY + hour * 3600))
            seq += 1
    return stored


def test_keeps_the_newest_n_the_first_of_each_day_inside_the_window_and_one_before_it():
    stored = [Stored(1, NOW - 40 * DAY), *_four_a_day(10)]
    window = 7 * DAY
    keep = kept(stored, now=NOW, keep_newest=3, window=window)
    inside = [s for s in stored if s.time >= NOW - window]
    before = [s for s in stored if s.time < NOW - window]
    first_of_days = {s.seq for s in inside if (s.time % DAY) // 3600 == 1}
    # The window starts within a day: that day's first kept checkpoint is the oldest one inside it.
    assert keep == {s.seq for s in stored[-3:]} | first_of_days | {inside[0].seq} | {before[-1].seq}
    assert 1 not in keep
    # Events are needed from the checkpoint before the window on: every version inside it replays.
    assert floor_of(stored, keep, now=NOW, window=window) == before[-1].seq


def test_while_the_window_reaches_back_before_every_checkpoint_nothing_is_purged():
    stored = _four_a_day(3)
    keep = kept(stored, now=NOW, keep_newest=2, window=30 * DAY)
    assert floor_of(stored, keep, now=NOW, window=30 * DAY) == 0
    # The first of each day and the newest two.
    assert keep == {s.seq for s in stored if (s.time % DAY) // 3600 == 1} | {s.seq for s in stored[-2:]}


def test_keeps_at_least_the_newest_and_nothing_is_chosen_twice():
    stored = [Stored(5, NOW - 100 * DAY), Stored(9, NOW - 90 * DAY)]
    assert kept(stored, now=NOW, keep_newest=0, window=30 * DAY) == {9}
    assert floor_of(stored, {9}, now=NOW, window=30 * DAY) == 9
    assert kept([], now=NOW, keep_newest=10, window=30 * DAY) == set()


def test_a_days_first_checkpoint_stays_chosen_as_later_ones_arrive():
    day_start = (NOW // DAY) * DAY
    first = Stored(10, day_start + 60)
    later = [Stored(10 + i, day_start + 60 + i * 600) for i in range(1, 6)]
    before = kept([first, *later[:2]], now=day_start + 3000, keep_newest=1, window=30 * DAY)
    after = kept([first, *later], now=day_start + 9000, keep_newest=1, window=30 * DAY)
    assert first.seq in before and first.seq in after
    assert after == {first.seq, later[-1].seq}


def test_inside_the_window_the_first_checkpoint_of_each_span_of_events_is_kept_too():
    # A busy day: a checkpoint every 10 events, all written within the last hour.
    stored = [Stored(seq, NOW - 3600 + seq) for seq in range(10, 400, 10)]
    keep = kept(stored, now=NOW, keep_newest=2, window=30 * DAY, span=100)
    firsts_of_spans = {10, 100, 200, 300}
    assert keep == firsts_of_spans | {380, 390}
    # So a replay to any version folds at most about a span of events past its checkpoint.
    ordered = sorted(keep)
    assert max(b - a for a, b in itertools.pairwise(ordered)) <= 100
    # Outside the window, spans keep nothing: only the newest before it stays.
    assert kept(stored, now=NOW + 2 * DAY, keep_newest=1, window=DAY, span=100) == {390}


async def _save_checkpoint(bus: Bus, scope: str, seq: int) -> None:
    await checkpoints.save(bus, scope, seq, b"not decoded by retention")


async def _just_after(bus: Bus, scope: str) -> float:
    """An instant just after the scope's newest checkpoint was written (by the writer's clock)."""
    return max(s.time for s in await checkpoints.listing(bus, scope)) + 1


async def _events(bus: Bus, n: int) -> None:
    src = ScriptedSource(bus, "test/retention")
    for i in range(n):
        await src.put(service(f"svc-{i}"))


async def test_purges_only_below_the_lowest_floor_and_never_without_the_default_scope(bus: Bus):
    await _events(bus, 30)
    last = await last_event_seq(bus)
    for seq in (10, 20, last):
        await _save_checkpoint(bus, "gateway.a.b", seq)
    other = Retention(bus, "gateway.a.b", keep_newest=1, window=0.0)
    await other.after_checkpoint(await _just_after(bus, "gateway.a.b"))
    # Pruned to the newest, its floor recorded, but nothing purged: the default scope has no floor yet.
    assert await checkpoints.sequences(bus, "gateway.a.b") == [last]
    assert (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq == 1
    assert await lowest_floor(bus) is None

    await _save_checkpoint(bus, "default", 12)
    await Retention(bus, "default", keep_newest=10, window=0.0).after_checkpoint(
        await _just_after(bus, "default")
    )
    assert await lowest_floor(bus) == 12
    state = (await bus.js.stream_info(EVENTS_STREAM)).state
    assert state.first_seq == 13 and state.last_seq == last


async def test_near_the_cap_only_the_newest_checkpoint_stays_and_an_alarm_is_raised(bus: Bus):
    await _events(bus, 40)
    info = await bus.js.stream_info(EVENTS_STREAM)
    # Cap the log just above what it holds: it is now over the pressure mark.
    config = info.config
    config.max_bytes = int(info.state.bytes * 1.1)
    await bus.js.update_stream(config)
    last = info.state.last_seq
    for seq in (5, 15, 25):
        await _save_checkpoint(bus, "default", seq)
    retention = Retention(bus, "default", keep_newest=10, window=30 * DAY)
    assert await retention.pressing()
    await retention.after_checkpoint(await _just_after(bus, "default"))

    assert await checkpoints.sequences(bus, "default") == [25]
    state = (await bus.js.stream_info(EVENTS_STREAM)).state
    assert (state.first_seq, state.last_seq) == (26, last)
    alarm = await status_store.read(bus, gaps.KIND, gaps.source("default"), ALARM_KEY)
    assert alarm is not None and "history narrowed to the checkpoint at 25" in alarm.reason

    # Room again (a larger cap): the next checkpoint clears the alarm.
    config.max_bytes = info.state.bytes * 10
    await bus.js.update_stream(config)
    await _save_checkpoint(bus, "default", last)
    await retention.after_checkpoint(await _just_after(bus, "default"))
    assert await status_store.read(bus, gaps.KIND, gaps.source("default"), ALARM_KEY) is None
    assert await checkpoints.sequences(bus, "default") == [25, last]


async def test_when_the_newest_checkpoint_and_its_tail_still_fill_the_log_the_alarm_says_so(bus: Bus):
    await _events(bus, 40)
    info = await bus.js.stream_info(EVENTS_STREAM)
    config = info.config
    config.max_bytes = int(info.state.bytes * 1.05)
    config.discard = api.DiscardPolicy.NEW
    await bus.js.update_stream(config)
    # The only checkpoint is old: its tail is nearly the whole log.
    await _save_checkpoint(bus, "default", 2)
    await Retention(bus, "default", keep_newest=10, window=30 * DAY).after_checkpoint(
        await _just_after(bus, "default")
    )
    alarm = await status_store.read(bus, gaps.KIND, gaps.source("default"), ALARM_KEY)
    assert alarm is not None and alarm.state == "rejected"
    assert "new events are refused" in alarm.reason
    # Nothing the checkpoint needs is gone.
    assert (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq == 3


async def test_a_floor_is_recorded_per_scope(bus: Bus):
    await record_floor(bus, "default", 7)
    await record_floor(bus, "gateway.x.y", 3)
    assert await lowest_floor(bus) == 3


async def _purged_up_to(bus: Bus) -> int:
    return (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq - 1


async def test_a_scope_missing_from_nats_pys_key_listing_still_holds_the_purge_back(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
):
    # nats-py's keys() ends at its watch's first "nothing pending" mark, which can come before the keys
    # already delivered (nats-io/nats.py#842): it then raises NoKeysError. Made certain here.
    async def premature_end(self: KeyValue, *args: object, **kwargs: object) -> list[str]:
        raise NoKeysError

    monkeypatch.setattr(KeyValue, "keys", premature_end)
    await _events(bus, 30)
    await record_floor(bus, "gateway.a.b", 5)
    await _save_checkpoint(bus, "default", 20)
    await Retention(bus, "default", keep_newest=10, window=0.0).after_checkpoint(
        await _just_after(bus, "default")
    )
    assert await lowest_floor(bus) == 5
    assert await _purged_up_to(bus) == 5


async def test_a_floor_written_just_before_the_purge_decision_holds_it_back(bus: Bus):
    stop = asyncio.Event()

    async def other_scopes() -> None:
        # Floors of other scopes written all along, as builders of many scopes do.
        i = 0
        while not stop.is_set():
            await record_floor(bus, f"gateway.busy.s{i % 20}", 1_000_000 + i)
            i += 1

    writer = asyncio.create_task(other_scopes())
    try:
        await record_floor(bus, "default", 1_000_000)
        for i in range(30):
            await record_floor(bus, f"gateway.new.s{i}", 100 - i)
            assert await lowest_floor(bus) == 100 - i
    finally:
        stop.set()
        await writer


async def test_floors_past_a_page_of_the_servers_subject_listing_hold_the_purge_back(bus: Bus):
    # nats-server lists at most 100,000 subjects per STREAM.INFO answer. The lowest floor sorts past the
    # first page and is written last, after a thousand more floors past that page.
    await record_floor(bus, "default", 25)
    subject = f"$KV.{RETENTION_BUCKET}.floor.gateway.g"
    for i in range(101_000):
        await bus.nc.publish(f"{subject}{i:06d}", b"25")
    await bus.js.publish(f"{subject}{101_000:06d}", b"25")  # stored: so are those before it
    await record_floor(bus, "gateway.z", 7)
    # Every floor is listed, the last page's too.
    assert len(await kv_listing.stored_keys(bus, RETENTION_BUCKET, "floor.>")) == 101_003
    assert await lowest_floor(bus) == 7
    await _events(bus, 30)
    await _save_checkpoint(bus, "default", 20)
    await Retention(bus, "default", keep_newest=10, window=0.0).after_checkpoint(
        await _just_after(bus, "default")
    )
    assert await _purged_up_to(bus) == 7


async def test_a_deleted_or_purged_floor_counts_for_nothing(bus: Bus):
    await record_floor(bus, "default", 12)
    await record_floor(bus, "gateway.gone", 3)
    await record_floor(bus, "gateway.purged", 4)
    await record_floor(bus, "gateway.live", 9)
    await bus.retention.delete("floor.gateway.gone")
    await bus.retention.purge("floor.gateway.purged")
    assert await lowest_floor(bus) == 9
    await bus.retention.delete("floor.default")
    assert await lowest_floor(bus) is None
