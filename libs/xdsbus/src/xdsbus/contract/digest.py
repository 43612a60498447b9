"""The version digest (docs/design.md §5; exact bytes in docs/architecture.md, "Digest").

Two algorithms, named in every ledger record (`Version.digest_algorithm`):

- `sha256-lines-v1` (an absent or empty name means this one: records written before the field existed)
  is the sha256 of every `type_url NUL name NUL sha256 LF` line, sorted. It costs O(all resources).
- `sha256-buckets4096-v1` puts each line in one of 4096 buckets by the first 12 bits of
  sha256(`type_url NUL name`); a bucket's digest is the sha256 of its sorted lines, and the version digest
  the sha256 of the 4096 raw 32-byte bucket digests in bucket order. `BucketDigest` keeps bucket digests
  and rehashes only the buckets a change touched, so a version costs O(change).

Readers verify a record with the algorithm it names (`digest_of`), so older records stay verifiable.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Iterable

from xdsbus.contract.resources import ResourceKey

LINES_V1 = "sha256-lines-v1"
BUCKETS_4096_V1 = "sha256-buckets4096-v1"
# What the builder writes.
CURRENT = BUCKETS_4096_V1

BUCKETS = 4096
_EMPTY_BUCKET = hashlib.sha256(b"").digest()

# One resource as the digest sees it: (type_url, name, sha256 hex of its serialized Any).
Entry = tuple[str, str, str]


class UnknownDigestAlgorithm(ValueError):
    """A record names a digest algorithm this version cannot compute."""


def algorithm_of(name: str) -> str:
    """The algorithm a record's `digest_algorithm` field names; empty means `sha256-lines-v1`."""
    algorithm = name or LINES_V1
    if algorithm not in (LINES_V1, BUCKETS_4096_V1):
        raise UnknownDigestAlgorithm(f"unknown digest algorithm {name!r}")
    return algorithm


def line(type_url: str, name: str, sha256: str) -> bytes:
    """One resource's digest line: `type_url NUL name NUL sha256 LF`."""
    return f"{type_url}\x00{name}\x00{sha256}\n".encode()


def bucket_of(type_url: str, name: str) -> int:
    """The bucket of a resource: the first 12 bits of sha256(`type_url NUL name`)."""
    h = hashlib.sha256(f"{type_url}\x00{name}".encode()).digest()
    return (h[0] << 4) | (h[1] >> 4)


def lines_digest(entries: Iterable[Entry]) -> str:
    """`sha256-lines-v1`: sha256 (hex) over every line, sorted."""
    return hashlib.sha256(b"".join(sorted(line(*e) for e in entries))).hexdigest()


def buckets_digest(entries: Iterable[Entry]) -> str:
    """`sha256-buckets4096-v1` computed from scratch: what `BucketDigest` maintains incrementally."""
    digest = BucketDigest()
    for type_url, name, sha256 in entries:
        digest.set(type_url, name, sha256)
    return digest.hexdigest()


def digest_of(algorithm: str, entries: Iterable[Entry]) -> str:
    """The digest of a resource set by the algorithm a record names (empty: `sha256-lines-v1`)."""
    if algorithm_of(algorithm) == LINES_V1:
        return lines_digest(entries)
    return buckets_digest(entries)


class BucketDigest:
    """`sha256-buckets4096-v1` over a changing resource set; a digest rehashes only dirty buckets.

    Given `sha_of`, each resource's sha256 is read from the caller when its bucket is hashed (the
    resource table holds them anyway, `set_key` then only records the key); without, it keeps them."""

    def __init__(self, sha_of: Callable[[ResourceKey], str] | None = None) -> None:
        self._own: dict[ResourceKey, str] | None = None if sha_of is not None else {}
        self._sha_of = sha_of if sha_of is not None else self._own_sha
        # Per bucket, its resource keys, sorted: a list, not a dict of key -> sha256 (~14 bytes per
        # endpoint less at 100k, bench builder_memory). The keys are the caller's own (`set_key`). The
        # lines are made when a dirty bucket is hashed, not kept: they would repeat every name and
        # sha256 the resource table already holds (about 70 bytes per endpoint at 100k).
        self._buckets: dict[int, list[ResourceKey]] = {}
        # Bucket b's raw digest at [32*b, 32*b+32), up to date except for the dirty buckets.
        self._digests = bytearray(_EMPTY_BUCKET * BUCKETS)
        self._dirty: set[int] = set()

    def _own_sha(self, key: ResourceKey) -> str:
        assert self._own is not None
        return self._own[key]

    def set(self, type_url: str, name: str, sha256: str) -> None:
        """Add a resource or change its sha256."""
        self.set_key(ResourceKey(type_url, name), sha256)

    def set_key(self, key: ResourceKey, sha256: str) -> None:
        """`set`, for a key the caller holds anyway (with `sha_of`, `sha_of(key)` must give `sha256`)."""
        if self._own is not None:
            self._own[key] = sha256
        bucket = bucket_of(key.type_url, key.name)
        keys = self._buckets.setdefault(bucket, [])
        at = bisect.bisect_left(keys, key)
        if at == len(keys) or keys[at] != key:
            keys.insert(at, key)
        self._dirty.add(bucket)

    def remove(self, type_url: str, name: str) -> None:
        """Drop a resource if present."""
        self.remove_key(ResourceKey(type_url, name))

    def remove_key(self, key: ResourceKey) -> None:
        """`remove`, by key."""
        bucket = bucket_of(key.type_url, key.name)
        keys = self._buckets.get(bucket)
        if keys is None:
            return
        at = bisect.bisect_left(keys, key)
        if at == len(keys) or keys[at] != key:
            return
        del keys[at]
        if self._own is not None:
            del self._own[key]
        if not keys:
            del self._buckets[bucket]
        self._dirty.add(bucket)

    def hexdigest(self) -> str:
        """The version digest (hex); rehashes the buckets changed since the last call."""
        sha_of = self._sha_of
        for bucket in self._dirty:
            keys = self._buckets.get(bucket)
            bucket_digest = (
                hashlib.sha256(b"".join(sorted(line(k.type_url, k.name, sha_of(k)) for k in keys))).digest()
                if keys
                else _EMPTY_BUCKET
            )
            self._digests[32 * bucket : 32 * bucket + 32] = bucket_digest
        self._dirty.clear()
        return hashlib.sha256(self._digests).hexdigest()
