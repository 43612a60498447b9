"""Message ids name publish attempts, and the fold ignores a republished fact (docs/design.md §4)."""

from __future__ import annotations

import dataclasses
from typing import Any

from tests.support.flaky_nats import FlakyNats
from xdsbus.bus import Bus
from xdsbus.events import AttemptIds, Event, Op, SyncEnd
from xdsbus.fold.reading import last_event_seq
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.watcher import Watcher

SOURCE = "file/ids"


def _upsert(body: dict[str, Any], rev: str = "r1") -> Event:
    return Event(source=SOURCE, kind="Service", key="default/a", op=Op.UPSERT, rev=rev, body=body)


def test_every_attempt_of_the_same_fact_gets_its_own_id() -> None:
    ids = AttemptIds("feedc0de")
    event = _upsert({"port": 80})
    first, second = ids.next(event), ids.next(event)
    assert first == f"{SOURCE}:Service:default/a:r1@feedc0de.1"
    assert second == f"{SOURCE}:Service:default/a:r1@feedc0de.2"


def test_a_new_process_never_reuses_an_id() -> None:
    event = _upsert({"port": 80})
    assert AttemptIds().next(event) != AttemptIds().next(event)


def test_sync_events_get_attempt_ids_too() -> None:
    ids = AttemptIds("feedc0de")
    begin = Event(source=SOURCE, kind="Service", op=Op.SYNC_BEGIN, epoch=7)
    end = Event(
        source=SOURCE, kind="Service", op=Op.SYNC_END, epoch=7, body=SyncEnd(keys=[], part=1, parts=2)
    )
    assert ids.next(begin) == f"{SOURCE}:Service:sync_begin:7@feedc0de.1"
    assert ids.next(end) == f"{SOURCE}:Service:sync_end:7:1@feedc0de.2"


class _Source(Watcher):
    async def watch(self) -> None:
        return None


async def test_retries_of_one_attempt_keep_its_id_and_the_next_attempt_gets_another(bus: Bus) -> None:
    # The first two sends fail on the way out and the third is stored but its answer lost; the
    # fourth is answered.
    nc = FlakyNats(bus.nc, lambda call: {1: "send_failed", 2: "send_failed", 3: "ack_lost"}.get(call))
    watcher = _Source(
        dataclasses.replace(bus, nc=nc), SOURCE, attempt_ids=AttemptIds("cafe"), publish_timeout=0.2
    )
    assert await watcher.upsert("Service", "default/a", {"port": 80}, rev="r1")
    assert nc.tried == [f"{SOURCE}:Service:default/a:r1@cafe.1"] * 4
    assert await last_event_seq(bus) == 1, "an attempt was stored twice"

    # The same fact again (a revert, a re-create): a new attempt, which JetStream must store.
    assert await watcher.upsert("Service", "default/a", {"port": 80}, rev="r1")
    assert nc.tried[-1] == f"{SOURCE}:Service:default/a:r1@cafe.2"


def test_the_fold_ignores_an_upsert_equal_to_what_it_holds() -> None:
    state = FoldState()
    ref = ObjectRef("Service", SOURCE, "default/a")
    assert apply(state, 1, _upsert({"port": 80})) == [ref]
    assert apply(state, 2, _upsert({"port": 80})) == [], "a republished fact changed something"
    # The same body under a new rev is recorded but changes no content.
    assert apply(state, 3, _upsert({"port": 80}, rev="r2")) == []
    stored = state.get(ref)
    assert stored is not None and stored.rev == "r2"
    # A new body under the same rev (a re-sealed Secret keeps its rev) is a change.
    assert apply(state, 4, _upsert({"port": 81}, rev="r2")) == [ref]
    # Back to the first body: a revert is a change as well.
    assert apply(state, 5, _upsert({"port": 80}, rev="r2")) == [ref]
