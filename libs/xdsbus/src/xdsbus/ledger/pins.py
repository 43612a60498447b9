"""What a pinned scope serves (docs/design.md §5, docs/rollback.md): the resources of the version it is
pinned to, read from that version's manifest in the ledger, so the pinned version has its digest.

The builder, `xdsbus replay` and `xdsbus rollback` (which checks before it publishes) all read a pin's
target here, so they accept and refuse the same versions: those whose record and resource set the
scope's ledger still holds (the history window), and whose resources add up to their digest."""

from __future__ import annotations

import msgspec
from nats.js.errors import NotFoundError

from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.pins import Pin
from xdsbus.contract.resources import Changes, Resource, ResourceKey
from xdsbus.ledger import reader
from xdsbus.ledger.store import BodyMissing, fetch_body
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.secretbox import SecretBox


class PinRejected(ValueError):
    """A pin whose version cannot be served: not a version of the scope, or older than the window."""


class PinTarget(msgspec.Struct, frozen=True):
    """The version a scope is pinned to: its record and its resources (key -> sha256)."""

    entry: reader.LedgerEntry
    resources: dict[ResourceKey, str]

    @property
    def version(self) -> int:
        return int(self.entry.record.version)

    @property
    def digest(self) -> str:
        return str(self.entry.record.digest)

    @property
    def digest_algorithm(self) -> str:
        """The algorithm of the target's digest, named (records before the field mean lines-v1)."""
        return digests.algorithm_of(self.entry.record.digest_algorithm)


async def target(bus: Bus, scope: str, version: int) -> PinTarget:
    """The record and resources of `version` of `scope`; `PinRejected` saying why it cannot be pinned."""
    try:
        entry = await reader.find(bus, scope, version)
    except reader.VersionNotFound:
        first = await _first_version(bus, scope)
        if first is not None and version < first:
            raise PinRejected(
                f"version {version} of scope {scope!r} is older than the history window (the oldest kept "
                f"is {first}): only versions inside it can be pinned"
            ) from None
        raise PinRejected(
            f"version {version} is not a version of scope {scope!r} (`xdsbus ledger log --scope {scope}` "
            "lists them)"
        ) from None
    try:
        resources = await reader.resource_set(bus, scope, version)
    except reader.HistoryPurged as exc:
        raise PinRejected(
            f"version {version} of scope {scope!r} is older than the history window: {exc}"
        ) from None
    if not reader.digest_matches(entry.record, resources):
        raise PinRejected(f"version {version} of scope {scope!r}: its resources do not add up to its digest")
    return PinTarget(entry=entry, resources=resources)


async def _first_version(bus: Bus, scope: str) -> int | None:
    """The oldest version the scope's ledger still holds, or None for none."""
    first_seq = (await bus.js.stream_info(LEDGER_STREAM)).state.first_seq
    seq = max(1, first_seq)
    while True:
        try:
            msg = await bus.js.get_msg(LEDGER_STREAM, seq=seq, subject=ledger_subject(scope), next=True)
        except NotFoundError:
            return None
        record = ledger_pb2.Version()
        record.ParseFromString(msg.data or b"")
        if not reader.is_term(record):
            return int(record.version)
        seq = (msg.seq or seq) + 1


async def changes_to(
    bus: Bus, current: dict[ResourceKey, str], wanted: dict[ResourceKey, str], box: SecretBox | None
) -> Changes:
    """The change list from `current` to `wanted`, in the order `ResourceTable.commit` uses, with the
    bodies of what changed read back from the body store (they are stored: a kept version names them).
    `PinRejected` when one is gone."""
    changed: list[tuple[ResourceKey, Resource]] = []
    for key in sorted(wanted):
        sha = wanted[key]
        if current.get(key) == sha:
            continue
        try:
            changed.append((key, Resource(sha, await fetch_body(bus, sha, box))))
        except BodyMissing as exc:
            raise PinRejected(f"{key.type_url} {key.name}: {exc}") from None
    removed = sorted(key for key in current if key not in wanted)
    return Changes(changed=changed, removed=removed)


def record_pin(pin: Pin) -> ledger_pb2.Pin:
    """The `pin` field of the version a pin or its release made."""
    return ledger_pb2.Pin(
        target=pin.version, operator=pin.by, via=pin.via, event_seq=pin.seq, reason=pin.reason
    )
