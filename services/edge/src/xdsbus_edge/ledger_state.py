"""A followed scope's ledger state: the served snapshot, plus the keys the newest ledger version changed.

The edge holds one index of a scope's resources: the served Snapshot (type URL -> name ->
CachedResource, with the raw sha256 on each resource). The ledger's newest version is that snapshot
plus `pending`, the keys whose target differs from it (their digest, or None when removed), which is
all a version that is being completed needs. The version digest (`sha256-buckets4096-v1`,
docs/architecture.md "Digest") is kept for the served snapshot as 4,096 bucket digests and, per bucket,
the resources in it (references to the snapshot's own objects); checking a version rehashes only the
buckets its pending keys fall in, so a version costs O(change) and the state costs a few bytes per
resource on top of the snapshot.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Iterator, Mapping

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


class LedgerState:
    """The served snapshot, the changes of the newest ledger version on top of it, and the digest of
    both."""

    def __init__(self) -> None:
        self.served: Snapshot | None = None
        # Key -> its digest in the newest version (None: removed), for the keys where that differs
        # from the served snapshot.
        self.pending: dict[ResourceKey, bytes | None] = {}
        # The served snapshot's bucket digests (32 bytes each, bucket b at 32*b) and per bucket its
        # resources (the snapshot's CachedResources, in no order).
        self._digests = bytearray(_EMPTY_BUCKET * digests.BUCKETS)
        self._members: dict[int, tuple[CachedResource, ...]] = {}

    def served_digest(self, k: ResourceKey) -> bytes | None:
        if self.served is None:
            return None
        res = self.served.of(k.type_url).get(k.name)
        return res.digest if res is not None else None

    def set(self, k: ResourceKey, digest: bytes | None) -> None:
        """The newest version holds `k` with this digest (None: does not hold it)."""
        if digest == self.served_digest(k):
            self.pending.pop(k, None)
        else:
            self.pending[k] = digest

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

    def _pending_by_bucket(self) -> dict[int, list[ResourceKey]]:
        # Worked out when needed rather than kept: a first load's 4,096 lists would stay next to the
        # bodies being fetched.
        buckets: dict[int, list[ResourceKey]] = {}
        for k in self.pending:
            buckets.setdefault(digests.bucket_of(k.type_url, k.name), []).append(k)
        return buckets

    def hexdigest(self, algorithm: str) -> str:
        """The newest version's digest by the algorithm a record names. Records written before the
        two-level digest (no algorithm named) are checked over the whole set: only a ledger from an
        older builder has them."""
        if digests.algorithm_of(algorithm) != digests.BUCKETS_4096_V1:
            return digests.digest_of(algorithm, self._entries())
        if not self.pending:
            return hashlib.sha256(self._digests).hexdigest()
        buckets = bytearray(self._digests)
        for bucket, keys in self._pending_by_bucket().items():
            lines = {(r.type_url, r.name): r.digest for r in self._members.get(bucket, ())}
            for k in keys:
                target = self.pending[k]
                if target is None:
                    lines.pop((k.type_url, k.name), None)
                else:
                    lines[(k.type_url, k.name)] = target
            buckets[32 * bucket : 32 * bucket + 32] = _hash_lines(lines)
        return hashlib.sha256(buckets).hexdigest()

    def _entries(self) -> Iterator[digests.Entry]:
        pending = self.pending
        if self.served is not None:
            for type_url, named in self.served.resources.items():
                for name, res in named.items():
                    if key(type_url, name) not in pending:
                        yield (type_url, name, res.digest.hex())
        for k, target in pending.items():
            if target is not None:
                yield (k.type_url, k.name, target.hex())

    def adopt(self, snapshot: Snapshot) -> None:
        """`snapshot` is served now: it holds the newest version (every pending key resolved)."""
        for bucket, keys in self._pending_by_bucket().items():
            changed = set(keys)
            kept = [r for r in self._members.get(bucket, ()) if key(r.type_url, r.name) not in changed]
            for k in keys:
                res = snapshot.of(k.type_url).get(k.name)
                if res is not None:
                    kept.append(res)
            if kept:
                self._members[bucket] = tuple(kept)
            else:
                self._members.pop(bucket, None)
            self._digests[32 * bucket : 32 * bucket + 32] = _hash_lines(
                {(r.type_url, r.name): r.digest for r in kept}
            )
        self.served = snapshot
        self.pending = {}

    def clear_pending(self) -> None:
        """Nothing differs from the served snapshot after all (a restart found the head it serves)."""
        self.pending = {}


class StateLoad:
    """The newest version of a LedgerState read again from the ledger, part by part: a base's set, then
    change lists. Each resource goes from the ledger's form (a key and a hex digest) to the state's as it
    is read, so a whole version is never held twice (the allocator would keep that peak)."""

    def __init__(self, state: LedgerState) -> None:
        self.state = state
        self.pending: dict[ResourceKey, bytes | None] = {}
        served = state.served
        # Served keys the version lacks are removed: those no part names.
        self._unmet: set[ResourceKey] = set()
        if served is not None:
            for type_url, named in served.resources.items():
                for name in named:
                    self._unmet.add(key(type_url, name))

    def _set(self, type_url: str, name: str, sha256: str | None) -> None:
        k = key(type_url, name)
        self._unmet.discard(k)
        digest = digest_bytes(sha256) if sha256 is not None else None
        if digest == self.state.served_digest(k):
            self.pending.pop(k, None)
        else:
            self.pending[k] = digest

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
        for k in self._unmet:
            self.pending[k] = None
        self.state.pending = self.pending
