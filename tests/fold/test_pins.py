"""LedgerPin events in the fold (docs/rollback.md): one pin per scope whichever operator tool sent it,
released by a delete; only operators pin and they do nothing else; a pin survives a checkpoint."""

from __future__ import annotations

import pytest

from xdsbus.contract.pins import LEDGER_PIN_KIND, Pin
from xdsbus.events import Event, MalformedEvent, Op
from xdsbus.fold.folding import BatchResult, fold_event
from xdsbus.fold.state import FoldState, apply
from xdsbus.ledger import checkpoints


def pin_event(scope: str, version: int, by: str = "ana", tool: str = "cli") -> Event:
    return Event(
        source=f"operator/{tool}",
        kind=LEDGER_PIN_KIND,
        key=scope,
        op=Op.UPSERT,
        rev=str(version),
        body={"version": version, "by": by, "reason": "bad deploy"},
    )


def unpin_event(scope: str, by: str = "ana", tool: str = "cli") -> Event:
    return Event(source=f"operator/{tool}", kind=LEDGER_PIN_KIND, key=scope, op=Op.DELETE, body={"by": by})


def test_the_newest_pin_of_a_scope_decides_whichever_tool_sent_it() -> None:
    state = FoldState()
    assert apply(state, 10, pin_event("default", 7)) == [], "a pin changes no translated object"
    assert state.pin_of("default") == Pin(
        version=7, by="ana", via="operator/cli", seq=10, reason="bad deploy"
    )
    assert state.pin_of("team-a") is None
    apply(state, 11, pin_event("default", 9, by="bo", tool="console"))
    assert state.pin_of("default") == Pin(
        version=9, by="bo", via="operator/console", seq=11, reason="bad deploy"
    )
    # The CLI releases what the console pinned; the release is kept, with who made it.
    apply(state, 12, unpin_event("default"))
    released = state.pin_of("default")
    assert released == Pin(version=0, by="ana", via="operator/cli", seq=12)
    assert not released.pinned


@pytest.mark.parametrize(
    ("event", "seq", "reason"),
    [
        # Only operators pin ...
        (
            Event(source="file/x", kind=LEDGER_PIN_KIND, key="default", op=Op.UPSERT, body={"version": 1}),
            5,
            "only they do",
        ),
        # ... and they do nothing else.
        (
            Event(source="operator/cli", kind="Ingress", key="default/x", op=Op.UPSERT, body={}),
            5,
            "LedgerPin events only",
        ),
        # A version is the sequence of an earlier event: the pin event's own or a later one is none.
        (pin_event("default", 5), 5, "not a version before this event"),
        (pin_event("default", 0), 5, "not a version before this event"),
        (
            Event(
                source="operator/cli",
                kind=LEDGER_PIN_KIND,
                key="default",
                op=Op.UPSERT,
                body={"version": "x"},
            ),
            5,
            "Expected `int`",
        ),
    ],
)
def test_what_is_not_a_pin_is_rejected_and_changes_nothing(event: Event, seq: int, reason: str) -> None:
    state = FoldState()
    apply(state, 2, pin_event("default", 1))
    result = BatchResult()
    fold_event(state, seq, "subject", event, result)
    assert [r.reason for r in result.rejected] and reason in result.rejected[0].reason, result.rejected
    assert state.seq == seq, "a rejected event is consumed"
    assert state.pin_of("default") == Pin(version=1, by="ana", via="operator/cli", seq=2, reason="bad deploy")
    assert not state.objects.get("Ingress")


def test_apply_raises_for_a_sync_of_an_operator_source() -> None:
    with pytest.raises(MalformedEvent, match="only upsert and delete"):
        apply(FoldState(), 3, Event(source="operator/cli", kind=LEDGER_PIN_KIND, op=Op.SYNC_BEGIN, epoch=1))


async def test_a_pin_survives_a_checkpoint() -> None:
    state = FoldState()
    apply(state, 4, pin_event("default", 3))
    snap = checkpoints.snapshot(
        scope="default",
        translator_version="test",
        state=state,
        ledger_version=3,
        ledger_stream_seq=2,
        published={},
    )
    restored = checkpoints.decode(await checkpoints.encode_snapshot(snap)).state
    assert restored.pin_of("default") == state.pin_of("default")
