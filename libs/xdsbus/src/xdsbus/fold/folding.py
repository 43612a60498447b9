"""Folding raw log messages: decode, validate, apply, and name what was rejected and why.

An upsert whose body was claim-checked (docs/design.md §4) carries a reference to an Object Store entry;
`fold_stored` reads that body before folding, so the fold itself (`fold_event`) stays pure."""

from __future__ import annotations

import msgspec
from nats.js.errors import DigestMismatchError, ObjectNotFoundError

from xdsbus.bus import EVENT_BODIES_STORE, Bus
from xdsbus.events import Event, MalformedEvent, decode_folded, with_folded_body
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.objects import read_claimed


class Rejection(msgspec.Struct, frozen=True):
    """An event the fold could not use; it is skipped and everything else still applies."""

    seq: int
    subject: str
    reason: str


class BatchResult(msgspec.Struct):
    changed: list[ObjectRef] = []
    rejected: list[Rejection] = []


def fold_message(state: FoldState, seq: int, subject: str, data: bytes, result: BatchResult) -> None:
    """Fold one stored message into `state`, recording its changes or its rejection in `result`.

    A claim-checked body is not read here: such an event is rejected (use `fold_stored`)."""
    try:
        event = decode_folded(data)
    except MalformedEvent as exc:
        _reject(state, seq, subject, exc, result)
        return
    fold_event(state, seq, subject, event, result)


async def fold_stored(
    bus: Bus, state: FoldState, seq: int, subject: str, data: bytes, result: BatchResult
) -> None:
    """`fold_message`, reading a claim-checked body from the Object Store first (every reader of the
    event log folds through here)."""
    try:
        event = decode_folded(data)
        if event.body_ref is not None:
            event = await read_stored_body(bus, event)
    except MalformedEvent as exc:
        _reject(state, seq, subject, exc, result)
        return
    fold_event(state, seq, subject, event, result)


async def read_stored_body(bus: Bus, event: Event) -> Event:
    """`event` with its claim-checked body, verified against its sha256; MalformedEvent when the body is
    gone or does not match (the event is then rejected like any other bad event)."""
    ref = event.body_ref
    if ref is None:
        return event
    try:
        data = await read_claimed(bus.js, bus.event_bodies, ref.sha256)
    except ObjectNotFoundError as exc:
        raise MalformedEvent(
            f"body of {event.kind} {event.key} ({ref.sha256}) is not in {EVENT_BODIES_STORE}"
        ) from exc
    except DigestMismatchError as exc:
        raise MalformedEvent(
            f"body of {event.kind} {event.key} in {EVENT_BODIES_STORE} does not match sha256 {ref.sha256}"
        ) from exc
    return with_folded_body(event, data)


def fold_event(state: FoldState, seq: int, subject: str, event: Event, result: BatchResult) -> None:
    """Fold one decoded event (its body already read) into `state`."""
    try:
        if event.body_ref is not None:
            raise MalformedEvent(f"body of {event.kind} {event.key} was not read from {EVENT_BODIES_STORE}")
        result.changed.extend(apply(state, seq, event))
    except MalformedEvent as exc:
        _reject(state, seq, subject, exc, result)


def _reject(state: FoldState, seq: int, subject: str, exc: MalformedEvent, result: BatchResult) -> None:
    # The sequence still advances: a bad event is consumed, never retried forever.
    state.seq = max(state.seq, seq)
    result.rejected.append(Rejection(seq=seq, subject=subject, reason=str(exc)))
