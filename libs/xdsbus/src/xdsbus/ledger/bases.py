"""Ledger bases (docs/design.md §5): the full manifest of a version, in Object Store
xdsbus_ledger_bases, so a reader starts from the newest base at or before its target and applies only
the records after it. Start-up then costs one base plus at most `base_every` records, whatever the
length of history.

A base is the serialized `xdsbus.proto.ledger.v1.Base` message under `<scope>.<version, 20 digits>`
(exact bytes in docs/architecture.md, "Ledger bases"). It is trusted only once verified: the digest of
its entries equals the digest it names, and the ledger record at its stream sequence is the same
version with the same digest. A base that is missing, damaged or does not verify is skipped for an
older one, with a log line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import msgspec
from google.protobuf.message import DecodeError
from nats.js.errors import BadObjectMetaError, DigestMismatchError, NotFoundError

from xdsbus.bus import LEDGER_STREAM, Bus
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import ResourceKey
from xdsbus.objects import list_objects, read_object
from xdsbus.proto.ledger.v1 import ledger_pb2

log = logging.getLogger(__name__)

# The encoding written (`Base.format`); a reader skips a base of another format.
FORMAT = 1


class BaseInvalid(ValueError):
    """A stored base that cannot be trusted (damaged, unknown format, or not matching the ledger)."""


class Base(msgspec.Struct, frozen=True):
    """A verified base: the resource set at `version`, whose record sits at `stream_seq`."""

    scope: str
    version: int
    stream_seq: int
    digest: str
    digest_algorithm: str
    time_unix_nano: int
    resources: dict[ResourceKey, str]


# Why a stored base is skipped: damaged, gone (ObjectNotFoundError is a NotFoundError) or not verified.
UNUSABLE = (BaseInvalid, NotFoundError, DigestMismatchError, BadObjectMetaError)


def name_of(scope: str, version: int) -> str:
    """Object name of a scope's base at `version`."""
    return f"{scope}.{version:020d}"


def version_of(scope: str, name: str) -> int | None:
    """The version an object name is the base of, or None when it is not one of `scope`'s bases.
    Scopes may contain dots (`gateway.<ns>.<name>`): the version is what follows the last one."""
    owner, dot, digits = name.rpartition(".")
    if not dot or owner != scope or len(digits) != 20 or not digits.isdigit():
        return None
    return int(digits)


def encode(
    *,
    scope: str,
    version: int,
    stream_seq: int,
    digest: str,
    digest_algorithm: str,
    resources: Mapping[ResourceKey, str],
    time_unix_nano: int | None = None,
) -> bytes:
    """The stored bytes of a base."""
    by_type: dict[str, tuple[list[str], list[str]]] = {}
    for key, sha in resources.items():
        names, shas = by_type.setdefault(key.type_url, ([], []))
        names.append(key.name)
        shas.append(sha)
    message = ledger_pb2.Base(
        format=FORMAT,
        scope=scope,
        version=version,
        stream_seq=stream_seq,
        digest=digest,
        digest_algorithm=digest_algorithm,
        time_unix_nano=time.time_ns() if time_unix_nano is None else time_unix_nano,
        resource_count=len(resources),
    )
    for type_url in sorted(by_type):
        names, shas = by_type[type_url]
        message.types.add(type_url=type_url, names=names, sha256=shas)
    return message.SerializeToString()


def decode(data: bytes) -> Base:
    """A base from its stored bytes, its entries checked against the digest it names. Raises
    `BaseInvalid` when it does not parse, is of an unknown format or does not add up."""
    message = ledger_pb2.Base()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise BaseInvalid(f"does not parse: {exc}") from exc
    if message.format != FORMAT:
        raise BaseInvalid(f"format {message.format} is not {FORMAT}")
    resources: dict[ResourceKey, str] = {}
    for group in message.types:
        if len(group.names) != len(group.sha256):
            raise BaseInvalid(f"{group.type_url}: {len(group.names)} names, {len(group.sha256)} sha256")
        type_url = group.type_url
        for name, sha in zip(group.names, group.sha256, strict=True):
            resources[ResourceKey(type_url, name)] = sha
    if len(resources) != message.resource_count:
        raise BaseInvalid(f"{len(resources)} resources, {message.resource_count} announced")
    try:
        computed = digests.digest_of(
            message.digest_algorithm, ((k.type_url, k.name, sha) for k, sha in resources.items())
        )
    except digests.UnknownDigestAlgorithm as exc:
        raise BaseInvalid(str(exc)) from exc
    if computed != message.digest:
        raise BaseInvalid(f"entries digest to {computed[:12]}, not {message.digest[:12]}")
    return Base(
        scope=message.scope,
        version=message.version,
        stream_seq=message.stream_seq,
        digest=message.digest,
        digest_algorithm=message.digest_algorithm,
        time_unix_nano=message.time_unix_nano,
        resources=resources,
    )


async def save(
    bus: Bus,
    *,
    scope: str,
    version: int,
    stream_seq: int,
    digest: str,
    digest_algorithm: str,
    resources: Mapping[ResourceKey, str],
) -> str:
    """Store the base of `scope` at `version` (its record at `stream_seq`); returns its name."""
    name = name_of(scope, version)
    data = encode(
        scope=scope,
        version=version,
        stream_seq=stream_seq,
        digest=digest,
        digest_algorithm=digest_algorithm,
        resources=resources,
    )
    await bus.ledger_bases.put(name, data)
    return name


class Stored(msgspec.Struct, frozen=True):
    """A base in the store, not yet read: its version and when it was written."""

    version: int
    name: str
    mtime: str


async def stored(bus: Bus, scope: str) -> list[Stored]:
    """The scope's bases in the store, oldest version first."""
    infos = await list_objects(bus.ledger_bases, what="the ledger bases")
    found = []
    for info in infos:
        version = version_of(scope, info.name) if not info.deleted else None
        if version is not None:
            found.append(Stored(version=version, name=info.name, mtime=info.mtime or ""))
    return sorted(found, key=lambda s: s.version)


async def load(bus: Bus, scope: str, version: int) -> Base:
    """Read and verify the base of `scope` at `version`: its own digest, and the ledger record at its
    stream sequence. Raises `BaseInvalid`, or ObjectNotFoundError when it is gone."""
    data = await read_object(bus.js, bus.ledger_bases, name_of(scope, version))
    base = decode(data)
    if base.scope != scope or base.version != version:
        raise BaseInvalid(f"holds scope {base.scope!r} version {base.version}")
    try:
        raw = await bus.js.get_msg(LEDGER_STREAM, base.stream_seq)
    except NotFoundError as exc:
        raise BaseInvalid(f"its record (stream sequence {base.stream_seq}) is gone") from exc
    record = ledger_pb2.Version()
    record.ParseFromString(raw.data or b"")
    if record.HasField("term") or record.scope != scope or record.version != version:
        raise BaseInvalid(f"stream sequence {base.stream_seq} is not version {version} of {scope!r}")
    if record.digest != base.digest or record.digest_algorithm != base.digest_algorithm:
        raise BaseInvalid(f"digest {base.digest[:12]} is not the record's {record.digest[:12]}")
    return base


async def newest_at_or_before(bus: Bus, scope: str, version: int | None = None) -> Base | None:
    """The newest verified base of `scope` at or before `version` (None: any), or None. A base that
    cannot be read or verified is logged and skipped for an older one."""
    for candidate in reversed(await stored(bus, scope)):
        if version is not None and candidate.version > version:
            continue
        try:
            return await load(bus, scope, candidate.version)
        except UNUSABLE as exc:
            log.warning(
                "ledger base %s unusable (%s); trying an older one",
                candidate.name,
                exc or type(exc).__name__,
            )
    return None
