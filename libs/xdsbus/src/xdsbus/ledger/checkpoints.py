"""Checkpoints of the folded state in Object Store xdsbus_checkpoints, named by event sequence.

A checkpoint is taken only when every folded event has been published to the ledger, so the resources
it implies equal the ledger head's. Restart and replay start from the newest one at or before their
target and fold the events after it.

The stored form is versioned (docs/design.md §4, §5: later code keeps reading every format ever
written). Format 0, the first, is headerless: the zlib-compressed msgpack of `Checkpoint`. Every later
format starts with `MAGIC` and a format byte; a zlib stream starts with 0x78, never with `MAGIC`, so
the two cannot be confused. Format 1 holds the same content, with the objects and the published list
in chunks so that the builder can encode them in steps that give the event loop back (`encode_snapshot`).

An object's body is embedded as the msgpack the folded state holds it in (`StoredObject.body`, bytes,
written as a `msgspec.Raw`), the encoding of the dicts older code held: both formats read the same
whichever code wrote them. Format 0 is read and written through its own layout (`_Checkpoint0`), as
`Checkpoint` no longer is it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import zlib
from collections.abc import Mapping

import msgspec
from nats.js.errors import DigestMismatchError, NotFoundError, ObjectNotFoundError

from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.fold.state import FoldState, StoredObject, SyncProgress
from xdsbus.gc_pause import gc_paused
from xdsbus.objects import list_objects, read_object

log = logging.getLogger(__name__)

MAGIC = b"XDSBUSCP"
# The format `encode_snapshot` writes. A new format gets the next number and a reader in `decode`;
# the readers of older formats stay.
FORMAT = 1
# Objects (or published resources) per encoded chunk: about 1 ms of msgspec at 1 KB per object.
CHUNK_ITEMS = 500
# Bytes handed to zlib at a time: about 2 ms at level 1.
COMPRESS_SLICE = 1 << 18


class UnknownCheckpointFormat(ValueError):
    """A checkpoint written in a format this code does not know (by newer code)."""


class Checkpoint(msgspec.Struct):
    """The folded state at `state.seq`, and the ledger head it corresponds to."""

    scope: str
    translator_version: str
    state: FoldState
    ledger_version: int
    ledger_stream_seq: int
    # The resources published at ledger_version: (type_url, name, sha256). Ledger information, not
    # translator output: restore needs the head's resource set to compute the next version's changes,
    # and until the ledger has bases (docs/design.md §5) reading it from the ledger alone costs every
    # version since the first.
    published: list[tuple[str, str, str]]


class _Stored0(msgspec.Struct, array_like=True):
    """A folded object in format 0: its body embedded as msgpack (what `StoredObject` once held)."""

    rev: str
    body: msgspec.Raw


class _State0(msgspec.Struct):
    """`FoldState` as format 0 holds it."""

    seq: int = 0
    objects: dict[str, dict[str, dict[str, _Stored0]]] = {}
    epochs: dict[str, dict[str, int]] = {}
    syncs: dict[str, dict[str, SyncProgress]] = {}
    terms: dict[str, int] = {}


class _Checkpoint0(msgspec.Struct):
    """Format 0's layout: `Checkpoint` with the state of `_State0`."""

    scope: str
    translator_version: str
    state: _State0
    ledger_version: int
    ledger_stream_seq: int
    published: list[tuple[str, str, str]]


class _Object(msgspec.Struct, array_like=True):
    """One object in a format 1 chunk."""

    kind: str
    source: str
    key: str
    rev: str
    body: msgspec.Raw


class _Format1(msgspec.Struct, kw_only=True):
    """Format 1's body, as read."""

    scope: str
    translator_version: str
    seq: int
    ledger_version: int
    ledger_stream_seq: int
    epochs: dict[str, dict[str, int]]
    syncs: dict[str, dict[str, SyncProgress]]
    objects: list[list[_Object]]
    # Watcher terms per source (docs/design.md §4); absent from checkpoints written before terms.
    terms: dict[str, int] = {}
    published: list[list[tuple[str, str, str]]]


class _Format1Out(msgspec.Struct, kw_only=True):
    """Format 1's body, as written: the same map as `_Format1`, its chunks already encoded."""

    scope: str
    translator_version: str
    seq: int
    ledger_version: int
    ledger_stream_seq: int
    epochs: msgspec.Raw
    syncs: msgspec.Raw
    objects: list[msgspec.Raw]
    published: list[msgspec.Raw]
    terms: msgspec.Raw


class Snapshot(msgspec.Struct, frozen=True, kw_only=True):
    """What a checkpoint will hold, copied out of the live state at one instant (`snapshot`)."""

    scope: str
    translator_version: str
    seq: int
    ledger_version: int
    ledger_stream_seq: int
    epochs: msgspec.Raw
    syncs: msgspec.Raw
    terms: msgspec.Raw
    # (kind, source, key, rev, body as msgpack)
    objects: list[tuple[str, str, str, str, msgspec.Raw]]
    published: dict[ResourceKey, str]


def snapshot(
    *,
    scope: str,
    translator_version: str,
    state: FoldState,
    ledger_version: int,
    ledger_stream_seq: int,
    published: Mapping[ResourceKey, str],
) -> Snapshot:
    """Copy what a checkpoint of `state` holds, so that the fold can go on while it is encoded.

    The fold mutates the state in place: it adds and removes objects in the nested dicts, and on an
    upsert equal in body it sets `rev` on the stored object. So the snapshot copies every (rev, body)
    out of the dicts: about 10 ms at 30k objects, where encoding them all costs tens of times more. The
    bodies themselves are shared (a Raw wraps the bytes without copying them): the fold replaces a
    changed object's body, it never edits one."""
    objects = [
        (kind, source, key, obj.rev, msgspec.Raw(obj.body))
        for kind, by_source in state.objects.items()
        for source, by_key in by_source.items()
        for key, obj in by_key.items()
    ]
    return Snapshot(
        scope=scope,
        translator_version=translator_version,
        seq=state.seq,
        ledger_version=ledger_version,
        ledger_stream_seq=ledger_stream_seq,
        # Small (one entry per source and kind): encoded now, which also copies them.
        epochs=msgspec.Raw(_encoder.encode(state.epochs)),
        syncs=msgspec.Raw(_encoder.encode(state.syncs)),
        terms=msgspec.Raw(_encoder.encode(state.terms)),
        objects=objects,
        published=dict(published),
    )


def _name(scope: str, seq: int) -> str:
    return f"{scope}.seq-{seq:020d}"


def _seq_of(scope: str, name: str) -> int | None:
    prefix = f"{scope}.seq-"
    if not name.startswith(prefix):
        return None
    try:
        return int(name[len(prefix) :])
    except ValueError:
        return None


_encoder = msgspec.msgpack.Encoder()
_format0 = msgspec.msgpack.Decoder(_Checkpoint0)
_format1 = msgspec.msgpack.Decoder(_Format1)


def encode(checkpoint: Checkpoint) -> bytes:
    """Format 0 in one blocking step: the form checkpoints were first written in, which `decode` still
    reads. The builder writes `encode_snapshot`'s format instead."""
    state = checkpoint.state
    objects = {
        kind: {
            source: {key: _Stored0(obj.rev, msgspec.Raw(obj.body)) for key, obj in by_key.items()}
            for source, by_key in by_source.items()
        }
        for kind, by_source in state.objects.items()
    }
    layout = _Checkpoint0(
        scope=checkpoint.scope,
        translator_version=checkpoint.translator_version,
        state=_State0(
            seq=state.seq, objects=objects, epochs=state.epochs, syncs=state.syncs, terms=state.terms
        ),
        ledger_version=checkpoint.ledger_version,
        ledger_stream_seq=checkpoint.ledger_stream_seq,
        published=checkpoint.published,
    )
    return zlib.compress(_encoder.encode(layout), 1)


async def encode_snapshot(snap: Snapshot) -> bytes:
    """The stored form (format `FORMAT`) of a snapshot, encoded and compressed in steps of about a
    millisecond that give the event loop back in between.

    msgspec and zlib hold the GIL, so a thread would not spare the loop: at 20k objects one blocking
    encode stalls it for hundreds of ms (lease renewals, NATS pings and the fold wait). In steps, the
    longest stall is one chunk (bench/builder_stall.py)."""
    objects = []
    for i in range(0, len(snap.objects), CHUNK_ITEMS):
        objects.append(msgspec.Raw(_encoder.encode(snap.objects[i : i + CHUNK_ITEMS])))
        await asyncio.sleep(0)
    resources = list(snap.published.items())
    published = []
    for i in range(0, len(resources), CHUNK_ITEMS):
        chunk = [(k.type_url, k.name, sha) for k, sha in resources[i : i + CHUNK_ITEMS]]
        published.append(msgspec.Raw(_encoder.encode(chunk)))
        await asyncio.sleep(0)
    body = _encoder.encode(
        _Format1Out(
            scope=snap.scope,
            translator_version=snap.translator_version,
            seq=snap.seq,
            ledger_version=snap.ledger_version,
            ledger_stream_seq=snap.ledger_stream_seq,
            epochs=snap.epochs,
            syncs=snap.syncs,
            objects=objects,
            published=published,
            terms=snap.terms,
        )
    )
    compressor = zlib.compressobj(1)
    parts = [MAGIC, bytes([FORMAT])]
    view = memoryview(body)
    for i in range(0, len(body), COMPRESS_SLICE):
        parts.append(compressor.compress(view[i : i + COMPRESS_SLICE]))
        await asyncio.sleep(0)
    parts.append(compressor.flush())
    return b"".join(parts)


def decode(data: bytes) -> Checkpoint:
    """Read a stored checkpoint of any format ever written. Raises `UnknownCheckpointFormat` for a
    newer one, `zlib.error` or `msgspec.DecodeError` for damaged data."""
    with gc_paused():
        if not data.startswith(MAGIC):
            return _from_format0(_format0.decode(zlib.decompress(data)))
        header = len(MAGIC) + 1
        fmt = data[len(MAGIC)] if len(data) >= header else None
        if fmt == 1:
            return _from_format1(_format1.decode(zlib.decompress(data[header:])))
    raise UnknownCheckpointFormat(f"checkpoint format {fmt} is newer than this code (format {FORMAT})")


def _from_format0(body: _Checkpoint0) -> Checkpoint:
    old = body.state
    # bytes(): a copy, as the decoded Raw is a view that would keep the whole checkpoint alive.
    objects = {
        kind: {
            source: {key: StoredObject(obj.rev, bytes(obj.body)) for key, obj in by_key.items()}
            for source, by_key in by_source.items()
        }
        for kind, by_source in old.objects.items()
    }
    return Checkpoint(
        scope=body.scope,
        translator_version=body.translator_version,
        state=FoldState(seq=old.seq, objects=objects, epochs=old.epochs, syncs=old.syncs, terms=old.terms),
        ledger_version=body.ledger_version,
        ledger_stream_seq=body.ledger_stream_seq,
        published=body.published,
    )


def _from_format1(body: _Format1) -> Checkpoint:
    objects: dict[str, dict[str, dict[str, StoredObject]]] = {}
    for chunk in body.objects:
        for obj in chunk:
            by_key = objects.setdefault(obj.kind, {}).setdefault(obj.source, {})
            # A copy: the decoded Raw is a view that would keep the whole checkpoint alive.
            by_key[obj.key] = StoredObject(rev=obj.rev, body=bytes(obj.body))
    state = FoldState(seq=body.seq, objects=objects, epochs=body.epochs, syncs=body.syncs, terms=body.terms)
    return Checkpoint(
        scope=body.scope,
        translator_version=body.translator_version,
        state=state,
        ledger_version=body.ledger_version,
        ledger_stream_seq=body.ledger_stream_seq,
        published=[resource for chunk in body.published for resource in chunk],
    )


async def save(bus: Bus, scope: str, seq: int, data: bytes) -> str:
    """Store an encoded checkpoint of `scope` at event sequence `seq`; returns its name."""
    name = _name(scope, seq)
    await bus.checkpoints.put(name, data)
    return name


class Stored(msgspec.Struct, frozen=True):
    """One stored checkpoint: its event sequence and when it was written (unix seconds; 0 if unknown)."""

    seq: int
    time: float


async def listing(bus: Bus, scope: str) -> list[Stored]:
    """The scope's checkpoints, oldest first."""
    infos = await list_objects(bus.checkpoints, what="the checkpoints")
    stored = []
    for info in infos:
        seq = _seq_of(scope, info.name)
        if seq is not None and not info.deleted:
            stored.append(Stored(seq, _unix(info.mtime)))
    return sorted(stored, key=lambda s: s.seq)


def _unix(mtime: str | None) -> float:
    # The writer's clock, in the object's metadata (ISO 8601).
    try:
        return datetime.datetime.fromisoformat(mtime or "").timestamp()
    except ValueError:
        return 0.0


async def sequences(bus: Bus, scope: str) -> list[int]:
    """Event sequences of the scope's checkpoints, ascending."""
    return [stored.seq for stored in await listing(bus, scope)]


async def delete(bus: Bus, scope: str, seq: int) -> None:
    """Delete the scope's checkpoint at `seq` (retention); one already gone is no error."""
    try:
        await bus.checkpoints.delete(_name(scope, seq))
    except (ObjectNotFoundError, NotFoundError):
        pass


async def load_at_or_before(bus: Bus, scope: str, seq: int | None = None) -> Checkpoint | None:
    """The newest checkpoint at or before `seq` (None: the newest), skipping unreadable ones (damaged,
    or of a format newer than this code)."""
    for candidate in reversed(await sequences(bus, scope)):
        if seq is not None and candidate > seq:
            continue
        try:
            data = await read_object(bus.js, bus.checkpoints, _name(scope, candidate))
            return decode(data)
        except (
            ObjectNotFoundError,
            NotFoundError,
            DigestMismatchError,
            UnknownCheckpointFormat,
            zlib.error,
            msgspec.DecodeError,
        ) as exc:
            log.warning("checkpoint %s of %s unreadable (%s); trying an older one", candidate, scope, exc)
    return None
