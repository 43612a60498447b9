"""The version digest (docs/design.md §5): both algorithms from their definition in docs/architecture.md
("Digest"), the incremental two-level digest against a from-scratch one, and the algorithm a record names."""

from __future__ import annotations

import hashlib
import random

import pytest

from xdsbus.contract import digest
from xdsbus.contract.resources import ResourceKey
from xdsbus.ledger import reader
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.translate.resource_table import ResourceTable

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"


def spelled_out(entries: list[tuple[str, str, str]]) -> str:
    """`sha256-buckets4096-v1` written straight from docs/architecture.md, sharing no code with it."""
    buckets: list[list[bytes]] = [[] for _ in range(4096)]
    for type_url, name, sha in entries:
        first_two = hashlib.sha256(type_url.encode() + b"\x00" + name.encode()).digest()[:2]
        buckets[int.from_bytes(first_two, "big") >> 4].append(
            type_url.encode() + b"\x00" + name.encode() + b"\x00" + sha.encode() + b"\n"
        )
    raw = b"".join(hashlib.sha256(b"".join(sorted(lines))).digest() for lines in buckets)
    assert len(raw) == 4096 * 32
    return hashlib.sha256(raw).hexdigest()


def entries(n: int, seed: int = 1) -> list[tuple[str, str, str]]:
    rng = random.Random(seed)
    return [
        (rng.choice((CLUSTER, ENDPOINT)), f"svc-{i}.ns-{rng.randrange(50)}", rng.randbytes(32).hex())
        for i in range(n)
    ]


def test_the_two_level_digest_is_the_one_documented() -> None:
    some = entries(5000)
    assert digest.buckets_digest(some) == spelled_out(some)
    # An empty set: the sha256 of 4096 digests of the empty string.
    assert digest.buckets_digest([]) == hashlib.sha256(hashlib.sha256(b"").digest() * 4096).hexdigest()


def test_the_lines_digest_is_the_one_records_were_written_with() -> None:
    some = entries(300)
    lines = sorted(f"{t}\x00{n}\x00{s}\n".encode() for t, n, s in some)
    assert digest.lines_digest(reversed(some)) == hashlib.sha256(b"".join(lines)).hexdigest()
    assert digest.lines_digest([]) == hashlib.sha256(b"").hexdigest()


def test_the_incremental_digest_follows_every_change() -> None:
    rng = random.Random(7)
    live: dict[tuple[str, str], str] = {}
    incremental = digest.BucketDigest()
    for step in range(3000):
        if live and rng.random() < 0.3:
            type_url, name = rng.choice(sorted(live))
            del live[(type_url, name)]
            incremental.remove(type_url, name)
        else:
            type_url, name = rng.choice((CLUSTER, ENDPOINT)), f"r{rng.randrange(800)}"
            live[(type_url, name)] = sha = rng.randbytes(32).hex()
            incremental.set(type_url, name, sha)
        if step % 97 == 0:
            assert incremental.hexdigest() == spelled_out([(t, n, s) for (t, n), s in live.items()])
    incremental.remove(CLUSTER, "never-there")
    assert incremental.hexdigest() == spelled_out([(t, n, s) for (t, n), s in live.items()])


def test_the_resource_table_digest_is_the_two_level_one() -> None:
    table = ResourceTable()
    for i in range(200):
        table.put(ENDPOINT, f"e{i}", f"body {i}".encode())
    table.remove(ENDPOINT, "e7")
    table.put(ENDPOINT, "e8", b"changed")
    expected = spelled_out([(k.type_url, k.name, r.sha256) for k, r in table.items()])
    assert table.digest() == expected
    assert digest.CURRENT == digest.BUCKETS_4096_V1


def test_a_record_is_checked_by_the_algorithm_it_names() -> None:
    resources = {ResourceKey(t, n): s for t, n, s in entries(100)}
    listed = [(k.type_url, k.name, s) for k, s in resources.items()]
    # Written before the field existed: no algorithm named, the lines digest.
    old = ledger_pb2.Version(version=1, digest=digest.lines_digest(listed))
    assert old.digest_algorithm == ""
    assert reader.digest_matches(old, resources)
    new = ledger_pb2.Version(version=2, digest=spelled_out(listed), digest_algorithm=digest.BUCKETS_4096_V1)
    assert reader.digest_matches(new, resources)
    # Each digest verifies only under its own algorithm.
    assert not reader.digest_matches(ledger_pb2.Version(version=3, digest=new.digest), resources)
    mislabelled = ledger_pb2.Version(version=4, digest=old.digest, digest_algorithm=digest.BUCKETS_4096_V1)
    assert not reader.digest_matches(mislabelled, resources)
    with pytest.raises(digest.UnknownDigestAlgorithm):
        reader.digest_matches(
            ledger_pb2.Version(version=5, digest=old.digest, digest_algorithm="md5"), resources
        )
