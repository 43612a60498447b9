"""The fold fences watchers by term (docs/design.md §4): events of an older term than the newest seen for
their source change nothing; term 0 (no lease) is always folded; terms survive a checkpoint."""

from __future__ import annotations

from typing import Any

from xdsbus.contract.resources import ResourceKey
from xdsbus.events import Event, Op, SyncEnd
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.ledger import checkpoints

SOURCE = "k8s/prod"


def upsert(key: str, term: int, body: Any = None, source: str = SOURCE) -> Event:
    return Event(
        source=source,
        kind="Service",
        key=key,
        op=Op.UPSERT,
        rev="r",
        term=term,
        body=body if body is not None else {"key": key},
    )


def delete(key: str, term: int) -> Event:
    return Event(source=SOURCE, kind="Service", key=key, op=Op.DELETE, term=term)


def sync(epoch: int, term: int, *keys: str) -> list[Event]:
    """A resync's sync_begin and sync_end (its upserts are the test's business)."""
    return [
        Event(source=SOURCE, kind="Service", op=Op.SYNC_BEGIN, epoch=epoch, term=term),
        Event(
            source=SOURCE,
            kind="Service",
            op=Op.SYNC_END,
            epoch=epoch,
            term=term,
            body=SyncEnd(keys=list(keys), part=0, parts=1),
        ),
    ]


def fold(events: list[Event], state: FoldState | None = None) -> FoldState:
    state = state or FoldState()
    for event in events:
        apply(state, state.seq + 1, event)
    return state


def keys(state: FoldState, source: str = SOURCE) -> set[str]:
    return set(state.objects.get("Service", {}).get(source, {}))


def test_a_stale_holder_cannot_delete_what_its_successor_published() -> None:
    # Term 5 published a and b; term 9 (the successor) resynced with a, b and x.
    begin, end = sync(100, 9, "a", "b", "x")
    state = fold([upsert("a", 5), upsert("b", 5), begin, upsert("x", 9), end])
    assert keys(state) == {"a", "b", "x"} and state.terms == {SOURCE: 9}
    # The paused term-5 holder wakes up: a relist from before x existed, with a newer epoch (its clock).
    changed = [apply(state, state.seq + 1, e) for e in [*sync(10**18, 5, "a", "b"), delete("a", 5)]]
    changed.append(apply(state, state.seq + 1, upsert("b", 5, {"stale": True})))
    assert changed == [[], [], [], []]
    assert keys(state) == {"a", "b", "x"}
    assert state.get(ObjectRef("Service", SOURCE, "b")).value() == {"key": "b"}  # type: ignore[union-attr]
    assert state.seq == 9, "a dropped event is still folded past"


def test_a_newer_term_resyncs_even_with_an_older_epoch() -> None:
    # The new holder's clock is behind: its epoch is lower than the old holder's, yet its list decides.
    state = fold([*sync(500, 3, "a", "b"), upsert("a", 3), upsert("b", 3)])
    state = fold([*sync(200, 4, "a")], state)
    assert keys(state) == {"a"}


def test_term_zero_is_always_folded_and_leaves_the_term_alone() -> None:
    # Term 0: written without a lease (before terms, or by an older watcher during an upgrade).
    state = fold([upsert("a", 7), upsert("b", 0), delete("a", 0)])
    assert keys(state) == {"b"} and state.terms == {SOURCE: 7}
    assert apply(state, state.seq + 1, upsert("c", 6)) == []  # still fenced at 7


def test_terms_are_per_source() -> None:
    state = fold([upsert("a", 50), upsert("a", 2, source="file/x")])
    assert keys(state) == {"a"} and keys(state, "file/x") == {"a"}
    assert state.terms == {SOURCE: 50, "file/x": 2}


async def test_terms_survive_a_checkpoint_and_fold_the_same_whatever_the_batching() -> None:
    events = [
        upsert("a", 5),
        upsert("b", 5),
        *sync(100, 9, "a"),
        upsert("c", 9),
        upsert("d", 5),  # stale: dropped
        delete("c", 0),
        upsert("e", 9),
    ]
    whole = fold(events)
    for cut in range(len(events) + 1):
        first = fold(events[:cut])
        snap = checkpoints.snapshot(
            scope="default",
            translator_version="test",
            state=first,
            ledger_version=1,
            ledger_stream_seq=1,
            published={ResourceKey("t", "n"): "sha"},
        )
        restored = checkpoints.decode(await checkpoints.encode_snapshot(snap)).state
        assert restored == first
        assert fold(events[cut:], restored) == whole, f"cut at {cut}"
    assert keys(whole) == {"a", "e"} and whole.terms == {SOURCE: 9}
