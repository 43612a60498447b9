"""Folding raw log messages: decode, validate, apply, and name what was rejected and why."""

from __future__ import annotations

import msgspec

from xdsbus.events import MalformedEvent, decode
from xdsbus.fold.state import FoldState, ObjectRef, apply


class Rejection(msgspec.Struct, frozen=True):
    """An event the fold could not use; it is skipped and everything else still applies."""

    seq: int
    subject: str
    reason: str


class BatchResult(msgspec.Struct):
    changed: list[ObjectRef] = []
    rejected: list[Rejection] = []


def fold_message(state: FoldState, seq: int, subject: str, data: bytes, result: BatchResult) -> None:
    """Fold one stored message into `state`, recording its changes or its rejection in `result`."""
    try:
        event = decode(data)
        result.changed.extend(apply(state, seq, event))
    except MalformedEvent as exc:
        # The sequence still advances: a bad event is consumed, never retried forever.
        state.seq = max(state.seq, seq)
        result.rejected.append(Rejection(seq=seq, subject=subject, reason=str(exc)))
