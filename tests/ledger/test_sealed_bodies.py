"""Secret bodies sealed in the ledger's body store (docs/design.md §5, §10), with a real nats-server: the
stored bytes hold no private key, the name and the digest stay the sha256 of the plaintext, readers open
them with the keyring, and a reader without the sealing key gets a clear error instead of the body."""

from __future__ import annotations

import hashlib

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2

from xdsbus.bus import Bus
from xdsbus.contract import digest
from xdsbus.contract.resources import Changes, Resource, ResourceKey
from xdsbus.contract.type_urls import CLUSTER, SECRET
from xdsbus.ledger import reader
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.ledger.store import (
    LARGE_BODY,
    BodySealed,
    fetch_body,
    fetch_stored,
    sealed_kid,
    store_bodies,
)
from xdsbus.secretbox import SEALED_MARKER, SecretBox, additional_data

PRIVATE_KEY = "\n".join(
    (
        "-----BEGIN PRIVATE KEY-----",
        "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
        "-----END PRIVATE KEY-----\n",
    )
)
OLD = SecretBox(b"o" * 32)
NEW = SecretBox(b"n" * 32, b"o" * 32)


def secret(name: str, key_pem: str = PRIVATE_KEY) -> Resource:
    message = secret_pb2.Secret(name=name)
    message.tls_certificate.certificate_chain.inline_string = "-----BEGIN CERTIFICATE-----\nMIIB\n"
    message.tls_certificate.private_key.inline_string = key_pem
    packed = any_pb2.Any()
    packed.Pack(message)
    body = packed.SerializeToString()
    return Resource(hashlib.sha256(body).hexdigest(), body)


def cluster(name: str) -> Resource:
    body = b"\x0a" + name.encode()
    return Resource(hashlib.sha256(body).hexdigest(), body)


async def publish(bus: Bus, box: SecretBox | None, *resources: tuple[ResourceKey, Resource]) -> None:
    publisher = LedgerPublisher(bus, "default", "t", box)
    lines = [(k.type_url, k.name, r.sha256) for k, r in resources]
    await publisher.publish(
        version=1,
        first_seq=1,
        changes=Changes(changed=list(resources), removed=[]),
        digest=digest.digest_of(digest.CURRENT, lines),
        resource_count=len(lines),
    )


async def test_secret_bodies_are_stored_sealed_under_the_plaintext_sha256(bus: Bus) -> None:
    tls, plain = secret("demo/shop-tls"), cluster("shop")
    await publish(
        bus, OLD, (ResourceKey(SECRET, "demo/shop-tls"), tls), (ResourceKey(CLUSTER, "shop"), plain)
    )

    stored = await fetch_stored(bus, tls.sha256)
    assert b"PRIVATE KEY" not in stored and b"MIIEvQIBADANBg" not in stored
    assert hashlib.sha256(stored).hexdigest() != tls.sha256
    # The exact stored form: a msgpack map, nonce and ct as bin, AAD ["xdsbus-sealed-v2", "ledger",
    # Secret type URL, sha256, kid] (docs/architecture.md).
    fields = msgspec.msgpack.decode(stored)
    assert list(fields) == ["sealed", "kid", "nonce", "ct"]
    assert (fields["sealed"], fields["kid"]) == (SEALED_MARKER, OLD.kid)
    assert isinstance(fields["nonce"], bytes) and len(fields["nonce"]) == 12
    aad = additional_data(source="ledger", kind=SECRET, key=tls.sha256, kid=OLD.kid)
    assert msgspec.msgpack.decode(AESGCM(b"o" * 32).decrypt(fields["nonce"], fields["ct"], aad)) == tls.body

    # Other bodies stay as they are; readers get the plaintext back, verified.
    assert await fetch_stored(bus, plain.sha256) == plain.body
    assert await fetch_body(bus, tls.sha256, OLD) == tls.body
    assert await fetch_body(bus, tls.sha256, NEW) == tls.body  # any key of the ring opens
    assert await fetch_body(bus, plain.sha256) == plain.body

    # The ledger names the plaintext: the record's digest is over the plaintext sha256.
    head = await reader.head(bus, "default")
    assert head is not None
    resources = await reader.resource_set(bus, "default", head.record.version)
    assert resources[ResourceKey(SECRET, "demo/shop-tls")] == tls.sha256
    assert reader.digest_matches(head.record, resources)


async def test_a_reader_without_the_sealing_key_gets_a_clear_error(bus: Bus) -> None:
    tls = secret("demo/shop-tls")
    await publish(bus, NEW, (ResourceKey(SECRET, "demo/shop-tls"), tls))
    with pytest.raises(BodySealed, match="no keyring"):
        await fetch_body(bus, tls.sha256)
    with pytest.raises(BodySealed, match=f"sealed with key {NEW.kid}, which the keyring"):
        await fetch_body(bus, tls.sha256, OLD)
    # Sealed for another name: stored under another sha256, it fails authentication.
    other = secret("demo/other", PRIVATE_KEY.replace("MIIE", "MIIF"))
    await bus.resources.put(other.sha256, await fetch_stored(bus, tls.sha256))
    with pytest.raises(BodySealed, match="failed authentication"):
        await fetch_body(bus, other.sha256, NEW)


async def test_plain_bodies_of_older_versions_are_read_and_resealed_by_the_next_leader(bus: Bus) -> None:
    tls = secret("demo/shop-tls")
    await store_bodies(bus, [tls])  # as a version before sealing stored it
    assert await fetch_body(bus, tls.sha256) == tls.body  # accepted: it hashes to its name

    publisher = LedgerPublisher(bus, "default", "t", OLD)
    assert await publisher.reseal([tls]) == 1
    assert sealed_kid(await fetch_stored(bus, tls.sha256)) == OLD.kid
    assert await publisher.reseal([tls]) == 0  # already sealed with the newest key: nothing rewritten

    # After a rotation the leader seals again with the new key; the name never changes.
    assert await LedgerPublisher(bus, "default", "t", NEW).reseal([tls, secret("never-stored")]) == 1
    assert sealed_kid(await fetch_stored(bus, tls.sha256)) == NEW.kid
    assert await fetch_body(bus, tls.sha256, NEW) == tls.body


async def test_a_large_secret_is_sealed_in_object_store(bus: Bus) -> None:
    tls = secret("demo/big", PRIVATE_KEY + "x" * LARGE_BODY)
    await publish(bus, OLD, (ResourceKey(SECRET, "demo/big"), tls))
    stored = await fetch_stored(bus, tls.sha256)
    assert len(stored) > LARGE_BODY and b"PRIVATE KEY" not in stored
    assert await fetch_body(bus, tls.sha256, OLD) == tls.body
