"""Checkpoints of the folded state in Object Store xdsbus_checkpoints, named by event sequence.

A checkpoint is taken only when every folded event has been published to the ledger, so the resources
it implies equal the ledger head's. Restart and replay start from the newest one at or before their
target and fold the events after it.
"""

from __future__ import annotations

import logging
import zlib

import msgspec
from nats.js.errors import DigestMismatchError, NotFoundError, ObjectNotFoundError

from xdsbus.bus import Bus
from xdsbus.fold.state import FoldState
from xdsbus.objects import read_object

log = logging.getLogger(__name__)


class Checkpoint(msgspec.Struct):
    """The folded state at `state.seq`, and the ledger head it corresponds to."""

    scope: str
    translator_version: str
    state: FoldState
    ledger_version: int
    ledger_stream_seq: int
    # The resources published at ledger_version: (type_url, name, sha256), sorted.
    published: list[tuple[str, str, str]]


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
_decoder = msgspec.msgpack.Decoder(Checkpoint)


def encode(checkpoint: Checkpoint) -> bytes:
    """The stored form of a checkpoint (compressed msgpack); a snapshot of the state as it is now."""
    return zlib.compress(_encoder.encode(checkpoint), 1)


async def save(bus: Bus, scope: str, seq: int, data: bytes) -> str:
    """Store an encoded checkpoint of `scope` at event sequence `seq`; returns its name."""
    name = _name(scope, seq)
    await bus.checkpoints.put(name, data)
    return name


async def sequences(bus: Bus, scope: str) -> list[int]:
    """Event sequences of the scope's checkpoints, ascending."""
    try:
        infos = await bus.checkpoints.list(ignore_deletes=True)
    except NotFoundError:
        return []
    seqs = (_seq_of(scope, info.name) for info in infos if not info.deleted)
    return sorted(s for s in seqs if s is not None)


async def load_at_or_before(bus: Bus, scope: str, seq: int | None = None) -> Checkpoint | None:
    """The newest checkpoint at or before `seq` (None: the newest), skipping unreadable ones."""
    for candidate in reversed(await sequences(bus, scope)):
        if seq is not None and candidate > seq:
            continue
        try:
            data = await read_object(bus.js, bus.checkpoints, _name(scope, candidate))
            return _decoder.decode(zlib.decompress(data))
        except (
            ObjectNotFoundError,
            NotFoundError,
            DigestMismatchError,
            zlib.error,
            msgspec.DecodeError,
        ) as exc:
            log.warning("checkpoint %s of %s unreadable (%s); trying an older one", candidate, scope, exc)
    return None
