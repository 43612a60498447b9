"""The resource table: every Envoy resource of a scope as serialized `Any` bytes and their sha256.

Resources are serialized once per content change. The table tracks what changed since the last commit,
so a ledger version lists exactly the resources whose bytes differ from the previous version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from xdsbus.contract import digest
from xdsbus.contract.resources import Changes, Resource, ResourceKey, pack_any


class ResourceTable:
    """The current resources, the set last committed, and the digest over them."""

    def __init__(self) -> None:
        self._entries: dict[ResourceKey, Resource] = {}
        self._committed: dict[ResourceKey, str] = {}
        self._dirty: set[ResourceKey] = set()
        # The two-level digest, kept up to date as resources change, so a version's digest costs
        # O(change) rather than O(resources).
        self._digest = digest.BucketDigest(sha_of=self._sha_of)

    def _sha_of(self, key: ResourceKey) -> str:
        # The digest reads each sha256 here rather than keeping its own copy of the mapping.
        return self._entries[key].sha256

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, type_url: str, name: str, message_bytes: bytes) -> None:
        """Set a resource from its serialized message; unchanged bytes are a no-op."""
        key = ResourceKey(type_url, name)
        body = pack_any(type_url, message_bytes)
        old = self._entries.get(key)
        if old is not None and old.body == body:
            return
        sha = hashlib.sha256(body).hexdigest()
        self._entries[key] = Resource(sha, body)
        self._digest.set_key(key, sha)
        self._dirty.add(key)

    def copy(self, key: ResourceKey, resource: Resource) -> None:
        """Set a resource as another table holds it (same bytes, same sha256); unchanged is a no-op."""
        old = self._entries.get(key)
        if old is not None and old.sha256 == resource.sha256:
            return
        self._entries[key] = resource
        self._digest.set_key(key, resource.sha256)
        self._dirty.add(key)

    def remove(self, type_url: str, name: str) -> None:
        """Drop a resource if present."""
        key = ResourceKey(type_url, name)
        if self._entries.pop(key, None) is None:
            return
        self._digest.remove_key(key)
        self._dirty.add(key)

    def get(self, type_url: str, name: str) -> Resource | None:
        """The resource, if present."""
        return self._entries.get(ResourceKey(type_url, name))

    def items(self) -> Iterable[tuple[ResourceKey, Resource]]:
        """Every resource, sorted by (type_url, name)."""
        return ((key, self._entries[key]) for key in sorted(self._entries))

    def digest(self) -> str:
        """The digest of every resource by `digest.CURRENT` (`sha256-buckets4096-v1`)."""
        return self._digest.hexdigest()

    def set_committed(self, committed: dict[ResourceKey, str]) -> None:
        """Declare what the ledger already holds; the next commit is the difference to it."""
        self._committed = dict(committed)
        self._dirty = set(committed) | set(self._entries)

    def committed(self) -> dict[ResourceKey, str]:
        """What the last commit published: key -> sha256."""
        return dict(self._committed)

    def commit(self) -> Changes:
        """The changes since the last commit, in a fixed order, and mark them committed."""
        changed: list[tuple[ResourceKey, Resource]] = []
        removed: list[ResourceKey] = []
        for key in sorted(self._dirty):
            entry = self._entries.get(key)
            before = self._committed.get(key)
            if entry is None:
                if before is not None:
                    removed.append(key)
                    del self._committed[key]
            elif entry.sha256 != before:
                changed.append((key, entry))
                self._committed[key] = entry.sha256
        self._dirty.clear()
        return Changes(changed=changed, removed=removed)
