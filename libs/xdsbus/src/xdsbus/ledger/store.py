"""Content-addressed resource bodies: KV xdsbus_resources, Object Store for bodies over 512 KiB.

Every body is named by the sha256 of its plaintext (the serialized `Any`). Secret bodies are stored
sealed with the keyring (docs/design.md §5, §10): the stored bytes are the msgpack map of
`secretbox.Sealed` (`nonce` and `ct` as msgpack bin), and the AES-GCM additional data binds source
`ledger`, kind the Secret type URL and key the body's sha256, so a sealed body moved under another name
fails to open. Readers open it and then check the plaintext's sha256 against the name, so sealing and
re-sealing never change a name or a digest. docs/architecture.md ("Secret bodies in the body store")
gives the exact bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Sequence

import msgspec
from nats.js.errors import NotFoundError, ObjectNotFoundError

from xdsbus.bus import RESOURCES_BUCKET, Bus
from xdsbus.contract.resources import Resource, ResourceKey
from xdsbus.contract.type_urls import SECRET
from xdsbus.kv_listing import is_marker
from xdsbus.ledger import direct_batch
from xdsbus.objects import READ_RETRY_WITHIN, read_object
from xdsbus.secretbox import Sealed, SecretBox, SecretKeyError, is_sealed
from xdsbus.transient import retry_transient

LARGE_BODY = 512 * 1024
# Publishes in flight at once when storing a version's bodies.
_WINDOW = 512
# Bodies asked for per batched direct get (the server answers at most 1024 per request), and such
# requests in flight at once.
DIRECT_BATCH = 1000
DIRECT_BATCHES_IN_FLIGHT = 4
# Leader reads at once for the bodies a direct get did not answer (a lagging replica, a stream without
# direct gets yet).
_LEADER_READS_AT_ONCE = 64
_RESOURCES_STREAM = f"KV_{RESOURCES_BUCKET}"
# The `source` a ledger body is sealed for (its kind is the type URL, its key the plaintext's sha256).
LEDGER_SOURCE = "ledger"


class BodyMissing(LookupError):
    """A body the ledger names is not in the store."""


class BodyCorrupt(ValueError):
    """A stored body whose sha256 does not match its name."""


class BodySealed(LookupError):
    """A sealed body this process cannot open: it has no keyring, or not the key that sealed it."""


def seal_body(box: SecretBox, resource: Resource) -> bytes:
    """The stored form of a Secret body: sealed with the newest key, bound to its sha256."""
    sealed = box.seal(resource.body, source=LEDGER_SOURCE, kind=SECRET, key=resource.sha256)
    return msgspec.msgpack.encode(msgspec.convert(sealed, Sealed))


def sealed_kid(stored: bytes) -> str | None:
    """The id of the key that sealed a stored body; None for a plain body."""
    sealed = _sealed(stored)
    return sealed.kid if sealed is not None else None


def _sealed(stored: bytes) -> Sealed | None:
    # A plain body is a serialized Any (field 1 first: 0x0a); a sealed one is a msgpack map.
    if not stored or stored[0] == 0x0A:
        return None
    try:
        decoded = msgspec.msgpack.decode(stored)
    except msgspec.DecodeError:
        return None
    if not is_sealed(decoded):
        return None
    try:
        return msgspec.convert(decoded, Sealed)
    except msgspec.ValidationError:
        return None


def open_body(stored: bytes, sha256: str, box: SecretBox | None) -> bytes:
    """The plaintext of a stored body named `sha256`, verified. A plain body is accepted when it hashes
    to its name (every non-Secret body, and Secret bodies stored before sealing); a sealed one is opened
    with `box`. Raises BodyCorrupt or BodySealed."""
    if hashlib.sha256(stored).hexdigest() == sha256:
        return stored
    sealed = _sealed(stored)
    if sealed is None:
        raise BodyCorrupt(f"resource body {sha256} does not match its digest")
    if box is None:
        raise BodySealed(f"resource body {sha256} is sealed with key {sealed.kid} and there is no keyring")
    try:
        plain = box.open(msgspec.structs.asdict(sealed), source=LEDGER_SOURCE, kind=SECRET, key=sha256)
    except SecretKeyError as exc:
        raise BodySealed(f"resource body {sha256}: {exc}") from exc
    if not isinstance(plain, bytes) or hashlib.sha256(plain).hexdigest() != sha256:
        raise BodyCorrupt(f"resource body {sha256} opens to bytes that do not match its digest")
    return plain


def stored_form(resource: Resource, type_url: str, box: SecretBox | None) -> bytes:
    """What is stored for a resource: Secret bodies sealed when there is a keyring, others as they are.
    The builder always has one when it publishes Secrets (without one it rejects every Secret)."""
    if type_url == SECRET and box is not None:
        return seal_body(box, resource)
    return resource.body


async def store_bodies(
    bus: Bus,
    resources: Iterable[Resource | tuple[ResourceKey, Resource]],
    box: SecretBox | None = None,
) -> None:
    """Store bodies under their sha256, pipelined; storing a body twice is harmless. Resources given
    with their key are sealed when they are Secrets and `box` is set."""
    seen: set[str] = set()

    def stored() -> Iterable[tuple[str, bytes]]:
        for item in resources:
            key, resource = item if isinstance(item, tuple) else (None, item)
            if resource.sha256 not in seen:
                seen.add(resource.sha256)
                yield (
                    resource.sha256,
                    (stored_form(resource, key.type_url, box) if key is not None else resource.body),
                )

    await _put(bus, stored())


async def reseal_bodies(bus: Bus, secrets: Iterable[Resource], box: SecretBox) -> int:
    """Store again, sealed with the newest key, the Secret bodies stored plain (by an older version) or
    sealed with another key; returns how many. Names and digests stay: only the stored bytes change."""
    stale: list[tuple[str, bytes]] = []
    for resource in secrets:
        try:
            stored = await fetch_stored(bus, resource.sha256)
        except BodyMissing:
            continue  # never stored: the publish that names it stores it sealed
        if sealed_kid(stored) != box.kid:
            stale.append((resource.sha256, seal_body(box, resource)))
    await _put(bus, stale)
    return len(stale)


async def _put(bus: Bus, bodies: Iterable[tuple[str, bytes]]) -> None:
    group = bus.acks().group()
    for sha256, body in bodies:
        if len(body) > LARGE_BODY:
            await bus.large_resources.put(sha256, body)
            continue
        await group.publish(_subject(sha256), body)
        if len(group) >= _WINDOW:
            await group.acked()
            group = bus.acks().group()
    await group.acked()


async def fetch_stored(bus: Bus, sha256: str) -> bytes:
    """A body's stored bytes, as they are (sealed or not), unverified. Read from the stream's leader:
    a replica answering a direct get may not hold a body stored an instant ago."""
    try:
        msg = await retry_transient(
            lambda: bus.js.get_last_msg(_RESOURCES_STREAM, _subject(sha256)),
            what=f"reading body {sha256}",
            within=READ_RETRY_WITHIN,
        )
        if not is_marker(msg.headers):
            return msg.data or b""
    except NotFoundError:
        pass
    try:
        return await read_object(bus.js, bus.large_resources, sha256)
    except (ObjectNotFoundError, NotFoundError) as exc:
        raise not_stored(sha256) from exc


def not_stored(sha256: str) -> BodyMissing:
    """The error of a body the store does not hold."""
    return BodyMissing(f"resource body {sha256} is not stored")


async def fetch_stored_many(bus: Bus, shas: Sequence[str]) -> dict[str, bytes]:
    """The stored bytes of the bodies named `shas`, as they are (sealed or not), unverified; a body not
    stored is absent from the result. Read by batched direct gets (ledger/direct_batch.py), a thousand
    bodies per request, instead of a request per body: what an edge pays to load a version of 40k
    resources (bench cold_load). A body a replica did not answer for is read again from the leader
    (`fetch_stored`), so a lagging replica never makes a stored body look missing."""
    found: dict[str, bytes] = {}
    chunks = [list(shas[i : i + DIRECT_BATCH]) for i in range(0, len(shas), DIRECT_BATCH)]
    todo = iter(chunks)

    async def worker() -> None:
        for chunk in todo:
            subjects = [_subject(sha) for sha in chunk]
            got = await direct_batch.last_of(bus.nc, _RESOURCES_STREAM, subjects)
            unanswered: list[str] = []
            for sha, subject in zip(chunk, subjects, strict=True):
                entry = got.get(subject)
                if entry is not None and not is_marker(entry.headers):
                    found[sha] = entry.data
                else:
                    unanswered.append(sha)
            del got
            for at in range(0, len(unanswered), _LEADER_READS_AT_ONCE):
                some = unanswered[at : at + _LEADER_READS_AT_ONCE]
                bodies = await asyncio.gather(*(_stored_or_none(bus, sha) for sha in some))
                for sha, body in zip(some, bodies, strict=True):
                    if body is not None:
                        found[sha] = body

    await asyncio.gather(*(worker() for _ in range(min(DIRECT_BATCHES_IN_FLIGHT, len(chunks)))))
    return found


async def _stored_or_none(bus: Bus, sha256: str) -> bytes | None:
    try:
        return await fetch_stored(bus, sha256)
    except BodyMissing:
        return None


def _subject(sha256: str) -> str:
    return f"$KV.{RESOURCES_BUCKET}.{sha256}"


async def fetch_body(bus: Bus, sha256: str, box: SecretBox | None = None) -> bytes:
    """A body's plaintext by its sha256, opened with `box` when sealed, and verified."""
    return open_body(await fetch_stored(bus, sha256), sha256, box)
