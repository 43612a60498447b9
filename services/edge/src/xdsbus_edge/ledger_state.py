"""A followed scope's ledger state: the served snapshot, plus the keys the newest ledger version changed.

The edge holds one index of a scope's resources: the served Snapshot (type URL -> name ->
CachedResource). The ledger's newest version is that snapshot plus `pending`, the keys whose target
differs from it (their raw digest, or None when removed), which is all a version that is being completed
needs. The version digest (`sha256-buckets4096-v1`,
docs/architecture.md "Digest") is kept for the served snapshot as 4,096 bucket digests and, per bucket,
the resources in it (references to the snapshot's own objects); checking a version rehashes only the
buckets its pending keys fall in, so a version costs O(change) and the state costs a few bytes per
resource on top of the snapshot. The bucket digests a check computes are kept (128 KiB) until the
version is served, which stores them instead of hashing those buckets again (issue 16: a load's
versions touch nearly every bucket), unless the pending keys changed in between.
"""

from __future__ import annotations

import array
import hashlib
import sys
from collections.abc import Iterator, Mapping, Sequence

from xdsbus.contract import digest as digests
from xdsbus.contract.resources import ResourceKey
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus_edge.snapshot import CachedResource, Snapshot

_EMPTY_BUCKET = hashlib.sha256(b"").digest()


class NotADigest(ValueError):
    """A ledger record names a body by something that is not a sha256 in hex."""


def digest_bytes(sha256: str) -> bytes:
    """The raw digest of a sha256 written in hex, as records and bases name bodies."""
    try:
        raw = bytes.fromhex(sha256)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise NotADigest(f"not a sha256: {sha256[:80]!r}")
    return raw


def _hash_lines(lines: Mapping[tuple[str, str], bytes]) -> bytes:
    """A bucket's digest: the sha256 of its resources' digest lines, sorted."""
    if not lines:
        return _EMPTY_BUCKET
    text = sorted(digests.line(t, n, d.hex()) for (t, n), d in lines.items())
    return hashlib.sha256(b"".join(text)).digest()


def key(type_url: str, name: str) -> ResourceKey:
    """A resource key with its strings interned: one type URL per type, not one per resource, and one
    name for the resources of different types that share it (a Cluster and its ClusterLoadAssignment),
    which every change list spells anew."""
    return ResourceKey(sys.intern(type_url), sys.intern(name))


def _grouped(buckets: array.array[int]) -> Iterator[tuple[int, Sequence[int]]]:
    """The positions in `buckets` per bucket, in bucket order: through a dict for fewer positions than
    buckets (a version's changes, at the cost of the change), by counting sort otherwise."""
    if len(buckets) < digests.BUCKETS:
        small: dict[int, list[int]] = {}
        for i, bucket in enumerate(buckets):
            small.setdefault(bucket, []).append(i)
        for bucket in sorted(small):
            yield bucket, small[bucket]
        return
    starts = array.array("q", bytes(8 * (digests.BUCKETS + 1)))
    for bucket in buckets:
        starts[bucket + 1] += 1
    for bucket in range(digests.BUCKETS):
        starts[bucket + 1] += starts[bucket]
    order = array.array("q", bytes(8 * len(buckets)))
    fill = array.array("q", starts)
    for i, bucket in enumerate(buckets):
        order[fill[bucket]] = i
        fill[bucket] += 1
    for bucket in range(digests.BUCKETS):
        if starts[bucket] != starts[bucket + 1]:
            yield bucket, order[starts[bucket] : starts[bucket + 1]]


class Pending(Mapping[ResourceKey, "bytes | None"]):
    """Key -> digest in the newest version (None: removed), for the keys where that differs from the
    served snapshot. A first load has every resource pending while its bodies are fetched, and what the
    load holds then stays the process's heap (Python's allocator keeps an arena while anything in it
    lives): so no object per key, only the interned name in a dict per type, mapped to the position of
    its digest in one buffer (-1: removed). Keys and digests read from it are made as they are read."""

    __slots__ = ("_buckets", "_digests", "_types", "changes")

    def __init__(self) -> None:
        self._types: dict[str, dict[str, int]] = {}
        # 32 bytes per digest put; a slot let go by `discard` stays until the pending set is replaced
        # (at the next switch).
        self._digests = bytearray()
        # Counts `put` and `discard` calls: bucket digests computed for the set are stale once it moves.
        self.changes = 0
        # The bucket of each key in iteration order, as `by_bucket` found it at `changes` (2 bytes a
        # key): a version's check and its switch both group the same keys.
        self._buckets: tuple[int, array.array[int]] | None = None

    def put(self, type_url: str, name: str, digest: bytes | None) -> None:
        """The newest version holds `type_url`/`name` with this digest (None: does not hold it); both
        strings interned."""
        self.changes += 1
        names = self._types.setdefault(type_url, {})
        if digest is None:
            names[name] = -1
            return
        if len(digest) != 32:
            raise NotADigest(f"not a raw sha256: {digest[:40]!r}")
        at = names.get(name, -1)
        if at < 0:
            at = names[name] = len(self._digests) // 32
            self._digests += digest
        else:
            self._digests[32 * at : 32 * at + 32] = digest

    def discard(self, type_url: str, name: str) -> None:
        self.changes += 1
        names = self._types.get(type_url)
        if names is not None:
            names.pop(name, None)

    def entries(self) -> Iterator[tuple[str, str, bytes | None]]:
        """(type URL, name, digest or None) of every pending key."""
        digests_ = self._digests
        for type_url, names in self._types.items():
            for name, at in names.items():
                yield type_url, name, (None if at < 0 else bytes(digests_[32 * at : 32 * at + 32]))

    def by_bucket(self) -> Iterator[tuple[int, list[tuple[str, str, bytes | None]]]]:
        """Per digest bucket touched (in bucket order) its pending entries. A few keys are grouped in a
        dict; many (a load) by a counting sort over arrays, so grouping a load holds no object per key
        (no pair, digest or position): only the bucket being yielded has its entries made."""
        types: list[str] = []
        names: list[str] = []
        ats = array.array("q")
        known = self._buckets
        found = known is not None and known[0] == self.changes
        buckets = known[1] if known is not None and found else array.array("H")
        for type_url, named in self._types.items():
            for name, at in named.items():
                types.append(type_url)
                names.append(name)
                ats.append(at)
                if not found:
                    buckets.append(digests.bucket_of(type_url, name))
        self._buckets = (self.changes, buckets)
        for bucket, positions in _grouped(buckets):
            yield (
                bucket,
                [
                    (
                        types[i],
                        names[i],
                        None if ats[i] < 0 else bytes(self._digests[32 * ats[i] : 32 * ats[i] + 32]),
                    )
                    for i in positions
                ],
            )

    def __getitem__(self, k: ResourceKey) -> bytes | None:
        at = self._types[k.type_url][k.name]
        return None if at < 0 else bytes(self._digests[32 * at : 32 * at + 32])

    def __iter__(self) -> Iterator[ResourceKey]:
        for type_url, names in self._types.items():
            for name in names:
                yield ResourceKey(type_url, name)

    def __len__(self) -> int:
        return sum(len(names) for names in self._types.values())


class LedgerState:
    """The served snapshot, the changes of the newest ledger version on top of it, and the digest of
    both."""

    def __init__(self) -> None:
        self.served: Snapshot | None = None
        # What the newest version changes on top of the served snapshot.
        self._pending = Pending()
        # The served snapshot's bucket digests (32 bytes each, bucket b at 32*b) and per bucket its
        # resources (the snapshot's CachedResources, in no order).
        self._digests = bytearray(_EMPTY_BUCKET * digests.BUCKETS)
        self._members: list[tuple[CachedResource, ...]] = [()] * digests.BUCKETS
        # The newest version's bucket digests as `hexdigest` computed them, with `pending.changes` then;
        # dropped when `pending` is replaced.
        self._hashed: tuple[int, bytearray] | None = None

    @property
    def pending(self) -> Pending:
        """What the newest version changes on top of the served snapshot."""
        return self._pending

    @pending.setter
    def pending(self, pending: Pending) -> None:
        self._pending = pending
        self._hashed = None

    def served_digest(self, k: ResourceKey) -> bytes | None:
        if self.served is None:
            return None
        res = self.served.of(k.type_url).get(k.name)
        return res.peek_digest() if res is not None else None

    def set(self, k: ResourceKey, digest: bytes | None) -> None:
        """The newest version holds `k` with this digest (None: does not hold it)."""
        if digest == self.served_digest(k):
            self.pending.discard(k.type_url, k.name)
        else:
            self.pending.put(k.type_url, k.name, digest)

    def reset(self, resources: dict[ResourceKey, str]) -> None:
        """The newest version's whole resource set (key -> sha256 hex), read from the ledger: pending
        becomes what differs from the served snapshot. `resources` is emptied as it is read."""
        loading = self.loading()
        loading.add_set(resources)
        loading.finish()

    def loading(self) -> StateLoad:
        """Start replacing the newest version by one read in parts (reader.version_parts); it replaces
        it at `StateLoad.finish`."""
        return StateLoad(self)

    def hexdigest(self, algorithm: str) -> str:
        """The newest version's digest by the algorithm a record names. Records written before the
        two-level digest (no algorithm named) are checked over the whole set: only a ledger from an
        older builder has them."""
        if digests.algorithm_of(algorithm) != digests.BUCKETS_4096_V1:
            return digests.digest_of(algorithm, self._entries())
        if not self.pending:
            return hashlib.sha256(self._digests).hexdigest()
        return hashlib.sha256(self._newest_buckets()).hexdigest()

    def _newest_buckets(self) -> bytearray:
        """The newest version's 4096 bucket digests: the served ones with the buckets pending keys fall
        in rehashed; kept for `adopt` while `pending` does not change."""
        hashed = self._hashed
        if hashed is not None and hashed[0] == self.pending.changes:
            return hashed[1]
        buckets = bytearray(self._digests)
        for bucket, entries in self.pending.by_bucket():
            lines = {(r.type_url, r.name): r.peek_digest() for r in self._members[bucket]}
            for type_url, name, target in entries:
                if target is None:
                    lines.pop((type_url, name), None)
                else:
                    lines[(type_url, name)] = target
            buckets[32 * bucket : 32 * bucket + 32] = _hash_lines(lines)
        self._hashed = (self.pending.changes, buckets)
        return buckets

    def _entries(self) -> Iterator[digests.Entry]:
        pending = self.pending
        if self.served is not None:
            for type_url, named in self.served.resources.items():
                for name, res in named.items():
                    if key(type_url, name) not in pending:
                        yield (type_url, name, res.peek_digest().hex())
        for type_url, name, target in pending.entries():
            if target is not None:
                yield (type_url, name, target.hex())

    def adopt(self, snapshot: Snapshot) -> None:
        """`snapshot` is served now: it holds the newest version (every pending key resolved). Called
        with the bodies of a whole load alive: each touched bucket gets its new members tuple once.
        `snapshot` holds each pending key with the digest pending names (the follower stages only bodies
        it verified or found under that digest), so the bucket digests `hexdigest` computed for the same
        pending keys are stored as they are; only when the keys changed since are the buckets hashed."""
        members = self._members
        hashed = self._hashed
        # The served digests with the touched buckets replaced, when checked. Hashing here would also
        # hash the body of every small resource in those buckets again (peek_digest).
        newest = hashed[1] if hashed is not None and hashed[0] == self.pending.changes else None
        for bucket, entries in self.pending.by_bucket():
            changed = {(type_url, name) for type_url, name, _ in entries}
            kept = [r for r in members[bucket] if (r.type_url, r.name) not in changed]
            for type_url, name, _ in entries:
                res = snapshot.of(type_url).get(name)
                if res is not None:
                    kept.append(res)
            members[bucket] = tuple(kept)
            if newest is None:
                self._digests[32 * bucket : 32 * bucket + 32] = _hash_lines(
                    {(r.type_url, r.name): r.peek_digest() for r in kept}
                )
        if newest is not None:
            self._digests = newest
        self.served = snapshot
        self.pending = Pending()

    def clear_pending(self) -> None:
        """Nothing differs from the served snapshot after all (a restart found the head it serves)."""
        self.pending = Pending()


class StateLoad:
    """The newest version of a LedgerState read again from the ledger, part by part: a base's set, then
    change lists. Each resource goes from the ledger's form (a key and a hex digest) to the state's as it
    is read, so a whole version is never held twice (the allocator would keep that peak)."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.pending = Pending()
        served = state.served
        # Served names (per type) the version lacks are removed: those no part names.
        self._unmet: dict[str, set[str]] = {}
        if served is not None:
            for type_url, named in served.resources.items():
                self._unmet[type_url] = set(named)

    def _set(self, type_url: str, name: str, sha256: str | None) -> None:
        type_url, name = sys.intern(type_url), sys.intern(name)
        unmet = self._unmet.get(type_url)
        if unmet is not None:
            unmet.discard(name)
        digest = digest_bytes(sha256) if sha256 is not None else None
        served = self.state.served
        res = served.of(type_url).get(name) if served is not None else None
        if digest == (res.peek_digest() if res is not None else None):
            self.pending.discard(type_url, name)
        else:
            self.pending.put(type_url, name, digest)

    def add_set(self, resources: dict[ResourceKey, str]) -> None:
        """A whole set (key -> sha256 hex), emptied as it is read."""
        while resources:
            k, sha = resources.popitem()
            self._set(k.type_url, k.name, sha)

    def add_changes(self, changes: ledger_pb2.Changes) -> None:
        """One record's change list."""
        for ref in changes.changed:
            self._set(ref.type_url, ref.name, ref.sha256)
        for gone in changes.removed:
            self._set(gone.type_url, gone.name, None)

    def finish(self) -> None:
        """The version read is the state's newest."""
        for type_url, names in self._unmet.items():
            for name in names:
                self.pending.put(type_url, name, None)
        self.state.pending = self.pending
