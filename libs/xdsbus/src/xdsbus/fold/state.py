"""The folded state: what every source currently says, built from the event log in stream order.

The fold is the single place where events become state. It is deterministic: the same events, in the
same order, give the same state whatever the batching; replay and the builder both use it.

Terms fence watchers (docs/design.md §4). An event's `term` is the revision of its watcher's source
lease. The fold keeps the highest term seen per source and drops (folds as a no-op) any event of that
source with a lower term: a watcher that was paused past its lease cannot change anything once its
successor's first event is in the log, its `sync_end` included. A higher term starts afresh: the
source's resync epochs and gathered sync_end parts are forgotten, so the new holder's resync decides
even if its clock, from which epochs are drawn, is behind the old holder's. Term 0 is an event written
without a lease (before terms existed, or by an older watcher during an upgrade): it is always folded
and leaves the recorded term alone, so history stays readable and an older watcher is never ignored;
it is not fenced either.

Operator events are decisions, not a source's facts (docs/rollback.md): an operator source
(`operator/<tool>`) publishes `LedgerPin` events only, and the newest one of a scope decides whichever
tool sent it, so its pin is kept once per scope under the source `operator` (`pin_of`). They change no
object the translator reads: the builder looks at the pin itself.

Bodies are kept as the msgpack bytes they arrived as (`StoredObject.body`), not as the dicts they decode
to: at 100k endpoints the dicts were more than half of the builder's memory (bench builder_memory).
Readers decode what they need (`StoredObject.value`, `model.k8s.decode_object`), and a checkpoint embeds
the bytes as they are (a `msgspec.Raw` each), so its stored form is the one the dicts gave.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, TypeVar

import msgspec

from xdsbus.contract.pins import LEDGER_PIN_KIND, OPERATOR, Pin, PinRequest, is_operator_source
from xdsbus.events import Event, MalformedEvent, Op, SyncEnd

T = TypeVar("T")

_encoder = msgspec.msgpack.Encoder()


class StoredObject(msgspec.Struct, array_like=True, gc=False):
    """The latest body a source published for one object: its msgpack encoding, as in the event (a str
    and bytes hold no cycle, hence gc=False)."""

    rev: str
    # Plain bytes rather than a msgspec.Raw: a Raw is 48 bytes more per object (~30 per endpoint).
    body: bytes

    def value(self) -> Any:
        """The body decoded into dicts, lists and scalars, as the event carried it."""
        return msgspec.msgpack.decode(self.body)


def body_bytes(body: Any) -> bytes:
    """An event's body as the fold keeps it: the bytes of the Raw the fold's decoder left, or the msgpack
    encoding of a body built in process (tests, benchmarks)."""
    if isinstance(body, msgspec.Raw):
        return bytes(body)
    try:
        return _encoder.encode(body)
    except (TypeError, OverflowError) as exc:
        # Nothing a watcher could have published (msgpack holds no int past 64 bits, no object).
        raise MalformedEvent(f"body cannot be encoded: {exc}") from exc


def body_as(body: Any, kind: type[T]) -> T:
    """An event's body (a Raw, or builtins) converted to `kind`; msgspec.ValidationError or DecodeError
    when it does not fit."""
    if isinstance(body, msgspec.Raw):
        return msgspec.msgpack.decode(body, type=kind)
    return msgspec.convert(body, kind)


class ObjectRef(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """Identity of an object: its kind, the source that published it, and its key in that source
    (strings: no cycle, hence gc=False)."""

    kind: str
    source: str
    key: str


class SyncProgress(msgspec.Struct, array_like=True):
    """The parts of a sync_end received so far for one epoch."""

    epoch: int
    parts: int = 0
    received: list[int] = []
    keys: list[str] = []


class FoldState(msgspec.Struct):
    """Everything folded up to event sequence `seq`; checkpoints serialize exactly this."""

    seq: int = 0
    # kind -> source -> key -> object
    objects: dict[str, dict[str, dict[str, StoredObject]]] = {}
    # source -> kind -> current resync epoch
    epochs: dict[str, dict[str, int]] = {}
    # source -> kind -> sync_end parts gathered for the current epoch
    syncs: dict[str, dict[str, SyncProgress]] = {}
    # source -> highest watcher term seen (sources that only ever published term 0 are absent)
    terms: dict[str, int] = {}

    def get(self, ref: ObjectRef) -> StoredObject | None:
        """The stored object, if any."""
        return self.objects.get(ref.kind, {}).get(ref.source, {}).get(ref.key)

    def of_kind(self, kind: str) -> Iterator[tuple[ObjectRef, StoredObject]]:
        """Every object of a kind, in a fixed order (source, then key)."""
        by_source = self.objects.get(kind, {})
        for source in sorted(by_source):
            objects = by_source[source]
            for key in sorted(objects):
                yield ObjectRef(kind, source, key), objects[key]

    def pin_of(self, scope: str) -> Pin | None:
        """The scope's newest LedgerPin, released ones included (`Pin.pinned` says which); None when no
        operator ever pinned it."""
        stored = self.objects.get(LEDGER_PIN_KIND, {}).get(OPERATOR, {}).get(scope)
        return None if stored is None else msgspec.msgpack.decode(stored.body, type=Pin)

    def count(self) -> int:
        """Number of objects held."""
        return sum(len(objs) for by_source in self.objects.values() for objs in by_source.values())


def apply(state: FoldState, seq: int, event: Event) -> list[ObjectRef]:
    """Fold one event at stream sequence `seq`; returns the objects whose content changed."""
    if seq <= state.seq:
        # Already folded (a redelivery after restart): folding it again must change nothing.
        return []
    state.seq = seq
    if event.term and not _admit_term(state, event):
        return []
    if is_operator_source(event.source) or event.kind == LEDGER_PIN_KIND:
        _pin(state, seq, event)
        return []
    if event.op is Op.UPSERT:
        return _upsert(state, event)
    if event.op is Op.DELETE:
        return _delete(state, ObjectRef(event.kind, event.source, event.key))
    if event.op is Op.SYNC_BEGIN:
        _begin_sync(state, event)
        return []
    return _end_sync(state, event)


def _admit_term(state: FoldState, event: Event) -> bool:
    """Whether an event with a term is folded: not when its source has a newer term already."""
    held = state.terms.get(event.source, 0)
    if event.term < held:
        return False
    if event.term > held:
        state.terms[event.source] = event.term
        # Epochs are drawn from each holder's clock: a new term's resync must not lose to an old one's.
        state.epochs.pop(event.source, None)
        state.syncs.pop(event.source, None)
    return True


def _pin(state: FoldState, seq: int, event: Event) -> None:
    """Fold a LedgerPin event: the scope (its key) is pinned to the body's version (an upsert) or
    released (a delete). Anything else from an operator source, or a LedgerPin from another source, is
    malformed: operators pin and nothing else, and only operators pin."""
    if event.kind != LEDGER_PIN_KIND or not is_operator_source(event.source):
        raise MalformedEvent(
            f"{event.kind} from {event.source}: operator sources publish {LEDGER_PIN_KIND} events only, "
            f"and only they do"
        )
    if event.op not in (Op.UPSERT, Op.DELETE):
        raise MalformedEvent(f"{LEDGER_PIN_KIND} {event.op.value} of {event.key}: only upsert and delete")
    try:
        request = body_as(event.body or {}, PinRequest)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"{LEDGER_PIN_KIND} of {event.key}: {exc}") from exc
    version = request.version if event.op is Op.UPSERT else 0
    if event.op is Op.UPSERT and not 0 < version < seq:
        # A version is named by the sequence of its last event: one after the pin event is not one the
        # operator could have seen, and a replay must decide the same whenever it runs.
        raise MalformedEvent(
            f"{LEDGER_PIN_KIND} of {event.key}: version {version} is not a version before this event ({seq})"
        )
    pin = Pin(version=version, by=request.by, via=event.source, seq=seq, reason=request.reason)
    pins = state.objects.setdefault(LEDGER_PIN_KIND, {}).setdefault(OPERATOR, {})
    pins[event.key] = StoredObject(rev=str(seq), body=_encoder.encode(pin))


def _upsert(state: FoldState, event: Event) -> list[ObjectRef]:
    objects = state.objects.setdefault(event.kind, {}).setdefault(event.source, {})
    old = objects.get(event.key)
    body = body_bytes(event.body)
    if old is not None and old.body == body:
        # Message ids name publish attempts (docs/design.md §4), so a republish of what is held (a
        # restart's resync, a second replica) is stored; it changes nothing. The same body under a new
        # rev is recorded, but the content did not change. Equal means the same bytes: an equal body
        # encoded differently (keys in another order) is a change that translates to the same output.
        old.rev = event.rev
        return []
    objects[event.key] = StoredObject(rev=event.rev, body=body)
    return [ObjectRef(event.kind, event.source, event.key)]


def _delete(state: FoldState, ref: ObjectRef) -> list[ObjectRef]:
    objects = state.objects.get(ref.kind, {}).get(ref.source)
    if not objects or ref.key not in objects:
        return []
    del objects[ref.key]
    return [ref]


def _begin_sync(state: FoldState, event: Event) -> None:
    epochs = state.epochs.setdefault(event.source, {})
    if event.epoch < epochs.get(event.kind, 0):
        return
    epochs[event.kind] = event.epoch
    state.syncs.setdefault(event.source, {}).pop(event.kind, None)


def _end_sync(state: FoldState, event: Event) -> list[ObjectRef]:
    epochs = state.epochs.setdefault(event.source, {})
    current = epochs.get(event.kind, 0)
    if event.epoch < current:
        # A resync superseded by a newer one (another replica, a restart): it decides nothing.
        return []
    try:
        end = body_as(event.body, SyncEnd)
    except msgspec.DecodeError as exc:
        raise MalformedEvent(f"sync_end of {event.source} {event.kind}: {exc}") from exc
    epochs[event.kind] = event.epoch
    syncs = state.syncs.setdefault(event.source, {})
    progress = syncs.get(event.kind)
    if progress is None or progress.epoch != event.epoch:
        progress = syncs[event.kind] = SyncProgress(epoch=event.epoch, parts=end.parts)
    if end.part in progress.received:
        return []
    progress.received.append(end.part)
    progress.keys.extend(end.keys)
    if len(progress.received) < progress.parts:
        return []
    del syncs[event.kind]
    present = set(progress.keys)
    objects = state.objects.get(event.kind, {}).get(event.source, {})
    removed = [key for key in objects if key not in present]
    changed = []
    for key in sorted(removed):
        changed.extend(_delete(state, ObjectRef(event.kind, event.source, key)))
    return changed
