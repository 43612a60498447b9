"""The event envelope: what every watcher publishes to XDSBUS_EVENTS (docs/design.md §4)."""

from __future__ import annotations

import enum
import itertools
import re
import secrets
from typing import Any

import msgspec

ENVELOPE_VERSION = 1
EVENTS_STREAM = "XDSBUS_EVENTS"
EVENTS_SUBJECT_PREFIX = "xdsbus.events"

# Subject tokens may not hold '.', '*', '>' or white space; source names and kinds are folded to this.
_TOKEN_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


class Op(enum.StrEnum):
    UPSERT = "upsert"
    DELETE = "delete"
    SYNC_BEGIN = "sync_begin"
    SYNC_END = "sync_end"


class BodyRef(msgspec.Struct, frozen=True):
    """Where an upsert's body is when it is too large for a message: the Object Store entry of bucket
    `xdsbus_event_bodies` named by the sha256 (hex) of the body's msgpack encoding (claim check,
    docs/design.md §4)."""

    sha256: str
    size: int


class Event(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One normalized change, exactly as a source reported it."""

    v: int = ENVELOPE_VERSION
    source: str
    kind: str
    key: str = ""
    op: Op
    rev: str = ""
    epoch: int = 0
    at: int = 0
    body: Any = None
    # Set instead of `body` when the body is in the Object Store; optional, so `v` stays 1.
    body_ref: BodyRef | None = None
    # The publishing watcher's term: the revision of its source lease `watch.<type>.<name>`. The fold
    # drops events of an older term than it has seen for the source (docs/design.md §4); 0 means none.
    term: int = 0
    # Id of the keyring key that sealed `body` (Secrets only; docs/design.md §4); empty when unsealed.
    kid: str = ""


class SyncEnd(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Body of a sync_end: the keys present at the end of a resync, possibly in several parts."""

    keys: list[str]
    part: int = 0
    parts: int = 1


# Keys per sync_end message; keeps each message well under nats-server's 1 MiB max_payload.
SYNC_END_CHUNK = 5000

# An envelope larger than this carries a BodyRef instead of its body: nats-server's default max_payload.
CLAIM_CHECK_BYTES = 1024 * 1024
# A body larger than this is not published at all: the watcher reports the object instead.
MAX_BODY_BYTES = 16 * 1024 * 1024


class _FoldedEvent(Event, kw_only=True, omit_defaults=True):
    """An envelope as the fold decodes it: `body` left as the msgpack bytes it arrived as (empty when
    absent), which the folded state keeps instead of a tree of dicts (docs/design.md §4)."""

    body: msgspec.Raw = msgspec.Raw()


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Event)
_folded_decoder = msgspec.msgpack.Decoder(_FoldedEvent)
# A body that is msgpack nil: the same as no body.
_NIL = msgspec.Raw(b"\xc0")


class MalformedEvent(ValueError):
    """An event that cannot be decoded or violates the envelope contract."""


def encode(event: Event) -> bytes:
    """Serialize an event for the wire (msgpack)."""
    return _encoder.encode(event)


def decode(data: bytes) -> Event:
    """Decode and validate an envelope; raises MalformedEvent naming what is wrong."""
    try:
        event = _decoder.decode(data)
    # RecursionError: a body nested deeper than the interpreter allows (tests/fuzz).
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise MalformedEvent(f"undecodable envelope: {exc}") from exc
    _check(event)
    return event


def decode_folded(data: bytes) -> Event:
    """`decode` for the fold: the event's body is a `msgspec.Raw` of its own msgpack bytes (None when it
    has none), validated as `decode` would (the fold keeps only bodies that decode)."""
    try:
        event = _folded_decoder.decode(data)
        raw: msgspec.Raw = event.body
        body: Any = None
        if len(raw) and raw != _NIL:
            # Skipping a Raw checks the structure, not the strings' UTF-8 nor the extension types.
            msgspec.msgpack.decode(raw)
            # A view into `data`: the fold copies what it keeps (fold.state.body_bytes).
            body = raw
        event.body = body
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise MalformedEvent(f"undecodable envelope: {exc}") from exc
    _check(event)
    return event


def _check(event: Event) -> None:
    if event.v != ENVELOPE_VERSION:
        raise MalformedEvent(f"unsupported envelope version {event.v}")
    if "/" not in event.source:
        raise MalformedEvent(f"source {event.source!r} is not '<type>/<name>'")
    if not event.kind:
        raise MalformedEvent("empty kind")
    if event.op in (Op.UPSERT, Op.DELETE) and not event.key:
        raise MalformedEvent(f"{event.op.value} of {event.kind} without a key")
    if event.op is Op.UPSERT and (event.body is None) == (event.body_ref is None):
        raise MalformedEvent(f"upsert of {event.kind} {event.key} needs exactly one of body and body_ref")


def encode_body(body: Any) -> bytes:
    """The bytes a claim-checked body is stored as: its msgpack encoding, as inside an envelope."""
    return _encoder.encode(body)


def with_stored_body(event: Event, data: bytes) -> Event:
    """`event` with the body read back from its claim check (`data`, from `encode_body`)."""
    try:
        body = msgspec.msgpack.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise MalformedEvent(f"undecodable stored body of {event.kind} {event.key}: {exc}") from exc
    return msgspec.structs.replace(event, body=body, body_ref=None)


def with_folded_body(event: Event, data: bytes) -> Event:
    """`with_stored_body` for the fold: the body kept as the `msgspec.Raw` of `data`, once it decodes."""
    with_stored_body(event, data)
    return msgspec.structs.replace(event, body=msgspec.Raw(data), body_ref=None)


def subject_token(text: str) -> str:
    """Fold arbitrary text into one NATS subject token."""
    return _TOKEN_UNSAFE.sub("_", text) or "_"


def subject_for(source: str, kind: str) -> str:
    """`xdsbus.events.<source_type>.<source_name>.<kind>`."""
    source_type, _, source_name = source.partition("/")
    return ".".join(
        (EVENTS_SUBJECT_PREFIX, subject_token(source_type), subject_token(source_name), subject_token(kind))
    )


# Op's members as plain names: an enum member looked up on its class costs more than the rest of
# `fact_name`, which names every event published.
_UPSERT, _DELETE, _SYNC_BEGIN = Op.UPSERT, Op.DELETE, Op.SYNC_BEGIN


def fact_name(event: Event) -> str:
    """What an event says, as the readable head of its message id (not unique: a revert says it again)."""
    op = event.op
    if op is _UPSERT:
        return f"{event.source}:{event.kind}:{event.key}:{event.rev}"
    if op is _DELETE:
        return f"{event.source}:{event.kind}:{event.key}:{event.rev}:delete"
    if op is _SYNC_BEGIN:
        return f"{event.source}:{event.kind}:sync_begin:{event.epoch}"
    body = event.body
    part = body.part if isinstance(body, SyncEnd) else body.get("part", 0) if isinstance(body, dict) else 0
    return f"{event.source}:{event.kind}:sync_end:{event.epoch}:{part}"


class AttemptIds:
    """Nats-Msg-Id per publish attempt (docs/design.md §4): `<fact>@<incarnation>.<n>`.

    The incarnation is random per process start and `n` counts the attempts, so an id is never reused:
    a revert, a re-create or a republish after a restart is stored, while the retries of one attempt
    reuse its id and JetStream stores them once. Equal facts stored twice are ignored by the fold."""

    def __init__(self, incarnation: str | None = None) -> None:
        self.incarnation = incarnation or secrets.token_hex(8)
        self._count = itertools.count(1)

    def next(self, event: Event) -> str:
        """The id of a new publish attempt of `event`; compute it once, before any retry."""
        return f"{fact_name(event)}@{self.incarnation}.{next(self._count)}"


# One incarnation per process: every watcher in it counts from the same sequence.
PROCESS_ATTEMPTS = AttemptIds()
