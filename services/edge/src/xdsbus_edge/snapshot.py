"""Immutable snapshots: one complete ledger version of a scope, every resource serialized once.

A `CachedResource` holds a resource's ledger body (the serialized `Any`) and the tag and length that
frame it as the `resources` field of a response, so every connection that receives it shares the same
bytes. A `Snapshot` maps type URL -> name -> CachedResource for one version: it is the edge's one index
of a scope's resources (ledger_state.py keeps only what a newer version changes on top of it). Snapshots
are never modified after they are built; a new ledger version produces a new Snapshot that shares the
unchanged resources (and the per-type maps of types that did not change) with its predecessor.

SDS serves only the Secrets that the scope's listeners and clusters name (docs/design.md §7, §10): each
listener and cluster knows its Secret names (secret_refs.py), and a snapshot counts them, carried over
from its predecessor by looking at the changed listeners and clusters only. `servable(type)` is what
streams serve from.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from envoy.config.cluster.v3 import cluster_pb2
from google.protobuf import any_pb2

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    SECRET,
    TYPE_ORDER,
)
from xdsbus.contract.wire import field, field_head
from xdsbus_edge.secret_refs import REFERRING_TYPES, cluster_secrets, secrets_named
from xdsbus_edge.shared_responses import SharedResponses

SHORT_NAMES = {
    CLUSTER: "cds",
    ENDPOINT: "eds",
    LISTENER: "lds",
    EXTENSION_CONFIG: "ecds",
    SCOPED_ROUTE: "srds",
    ROUTE: "rds",
    SECRET: "sds",
}

# Types whose SotW responses must carry the complete set (absence means deletion); Envoy subscribes to
# scopes by wildcard, as to listeners and clusters.
FULL_STATE_TYPES = frozenset({CLUSTER, LISTENER, SCOPED_ROUTE})

_EMPTY: Mapping[str, CachedResource] = MappingProxyType({})
_NO_NAMES: frozenset[str] = frozenset()


def entry(resource: CachedResource) -> tuple[bytes, bytes]:
    """A resource as the pieces of a SotW `resources` entry (tag and length, then the Any)."""
    body = resource.body
    return _HEADS.get(len(body)) or _entry_head(len(body)), body


def short_type(type_url: str) -> str:
    """`cds`, `eds`, `lds`, `ecds`, `srds`, `rds`, `sds`, or the message name for other types."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]


def type_rank(type_url: str) -> tuple[int, str]:
    """Sort key putting types in push order: CDS, EDS, LDS, RDS, SDS, then anything else by name."""
    try:
        return (TYPE_ORDER.index(type_url), "")
    except ValueError:
        return (len(TYPE_ORDER), type_url)


def _unpack_cluster(any_bytes: bytes) -> cluster_pb2.Cluster | None:
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(any_bytes)
    cluster = cluster_pb2.Cluster()
    return cluster if wrapper.Unpack(cluster) else None


def _eds_service_name(cluster: cluster_pb2.Cluster) -> str | None:
    """The ClusterLoadAssignment name an EDS cluster subscribes to, or None for other clusters."""
    if cluster.type != cluster_pb2.Cluster.EDS and not cluster.HasField("eds_cluster_config"):
        return None
    return cluster.eds_cluster_config.service_name or cluster.name


# The tag and length of a `resources` entry by body length, shared by every resource of that size: looked
# up for every entry a response carries (a resource keeps no head of its own), so a plain dict, bounded.
_HEADS: dict[int, bytes] = {}
_HEADS_KEPT = 16384


def _entry_head(length: int) -> bytes:
    head = _HEADS.get(length)
    if head is None:
        head = field_head(2, length)
        if len(_HEADS) < _HEADS_KEPT:
            _HEADS[length] = head
    return head


# Bodies from this size on keep their digest from the start: hashing them again would cost more than the
# 32 bytes (a RouteConfiguration of 10,000 virtual hosts is 1.4 MB).
KEEP_DIGEST_FROM = 1024


class CachedResource:
    """One resource, serialized once and shared by every snapshot and connection that holds it.

    Its body is the ledger's bytes as fetched (never copied); `head` frames it as the `resources` entry
    of a response (field 2 = Any; also field 2 of a delta `Resource`), so an entry is the two pieces
    `head, body`. The digest is the 32 raw bytes of the sha256, not hex text.

    A resource is one small object per name and type of an edge's index, so it holds only what cannot
    be had otherwise: the body, the name, and, once asked for, the digest and the delta entry. The type
    URL is its class's (one subclass per type, `_class_of`); `eds_name` and `secrets` are slots of the
    types that name them (clusters, listeners) and class constants elsewhere; `head` is looked up from
    the body's length. The digest of a small body is hashed again when first asked for (by a stream
    comparing versions, or a delta stream) rather than kept from the load: the ledger named and the
    follower verified it, and most resources are never compared; `peek_digest` gives it without keeping
    it, for the ledger state's bucket digests."""

    __slots__ = ("_delta", "_digest", "body", "name")

    body: bytes
    name: str
    _digest: bytes | None
    _delta: tuple[bytes, bytes, bytes, bytes] | None
    type_url: ClassVar[str] = ""
    eds_name: str | None
    secrets: frozenset[str]

    def __new__(
        cls, type_url: str, name: str, digest: bytes | str | None, any_bytes: bytes
    ) -> CachedResource:
        """A resource of `type_url`; `digest` (raw or hex) is the body's sha256, None to have it hashed
        when needed. The instance is of the type's own subclass."""
        self = object.__new__(_class_of(type_url))
        self.name = name
        self.body = any_bytes
        self._delta = None
        if digest is None or len(any_bytes) < KEEP_DIGEST_FROM:
            self._digest = None
        else:
            self._digest = digest if isinstance(digest, bytes) else bytes.fromhex(digest)
        self._describe()
        return self

    def _describe(self) -> None:
        """Read what the type's resources name (clusters, listeners: the subclasses' own)."""

    @property
    def head(self) -> bytes:
        """The tag and length of the body as a `resources` entry."""
        return _entry_head(len(self.body))

    @property
    def digest(self) -> bytes:
        """The content digest (raw sha256): the delta resource version (in hex), the same on every
        replica. Kept once asked for: streams compare it for the resources they send."""
        digest = self._digest
        if digest is None:
            digest = self._digest = hashlib.sha256(self.body).digest()
        return digest

    def peek_digest(self) -> bytes:
        """The digest, hashed again rather than kept when it is not kept yet."""
        return self._digest or hashlib.sha256(self.body).digest()

    @property
    def sha256(self) -> str:
        """The digest in hex, as the ledger and delta xDS spell it."""
        return self.digest.hex()

    def delta_entry(self) -> tuple[bytes, bytes, bytes, bytes]:
        """The resource as a `resources` entry of a delta response: a `Resource{version=1, resource=2,
        name=3}` (fields in number order, as protobuf writes them) framed as field 2. Built on first use
        (only delta streams need it) and kept."""
        entry = self._delta
        if entry is None:
            version_field = field(1, self.sha256.encode())
            name_field = field(3, self.name.encode())
            head = self.head
            inner = len(version_field) + len(head) + len(self.body) + len(name_field)
            entry = self._delta = (field_head(2, inner) + version_field, head, self.body, name_field)
        return entry

    @property
    def size(self) -> int:
        return len(self.body)

    def __repr__(self) -> str:
        return f"CachedResource({self.name!r}, {self.peek_digest().hex()[:12]})"


class _Plain(CachedResource):
    """A resource of a type that names neither Secrets nor an EDS service."""

    __slots__ = ()
    eds_name = None
    secrets = _NO_NAMES


class _Referring(CachedResource):
    """A listener (or another type naming Secrets): the Secrets it names (docs/design.md §10)."""

    __slots__ = ("secrets",)
    eds_name = None

    def _describe(self) -> None:
        self.secrets = secrets_named(self.type_url, self.body) or _NO_NAMES


class _Cluster(CachedResource):
    """A cluster: the Secrets it names and the ClusterLoadAssignment it subscribes to (if EDS)."""

    __slots__ = ("eds_name", "secrets")

    def _describe(self) -> None:
        eds_name = None
        # Most name no Secret: they share one empty set.
        self.secrets = _NO_NAMES
        cluster = _unpack_cluster(self.body)
        if cluster is not None:
            eds_name = _eds_service_name(cluster)
            self.secrets = cluster_secrets(cluster) or _NO_NAMES
        # The name's own string when equal (the usual EDS cluster), not a copy from the body.
        self.eds_name = self.name if eds_name == self.name else eds_name


_CLASSES: dict[str, type[CachedResource]] = {}


def _class_of(type_url: str) -> type[CachedResource]:
    """The subclass of one type's resources: its type URL as a class attribute, not one per resource."""
    found = _CLASSES.get(type_url)
    if found is None:
        kind = _Cluster if type_url == CLUSTER else _Referring if type_url in REFERRING_TYPES else _Plain
        found = _CLASSES[type_url] = type(
            f"{kind.__name__.lstrip('_')}Resource", (kind,), {"__slots__": (), "type_url": type_url}
        )
    return found


class Snapshot:
    """A complete, verified ledger version of one scope. Never modified once built."""

    def __init__(
        self,
        *,
        scope: str,
        version: int,
        digest: str,
        resources: Mapping[str, Mapping[str, CachedResource]],
        predecessor: int = 0,
        changed: Mapping[str, frozenset[str]] | None = None,
        published_ns: int = 0,
        translator_version: str = "",
        previous: Snapshot | None = None,
    ) -> None:
        self.scope = scope
        self.version = version
        # The xDS version string: the ledger version in decimal, identical on every edge replica.
        self.version_info = str(version)
        self.digest = digest
        self.resources = resources
        # The version of the snapshot served before this one, and the names (per type) that were
        # added, changed or removed since it: lets a stream that holds the predecessor check only those.
        self.predecessor = predecessor
        self.changed: Mapping[str, frozenset[str]] = changed or {}
        inherit = previous is not None and previous.version == predecessor
        # Secret name -> how many listeners and clusters name it; never modified once built (shared with
        # the predecessor while no listener or cluster changes).
        self.secret_refs: Mapping[str, int] = self._count_refs(previous if inherit else None)
        self._servable_secrets: Mapping[str, CachedResource] | None = None
        if (
            inherit
            and previous is not None
            and previous.of(SECRET) is self.of(SECRET)
            and previous.secret_refs is self.secret_refs
        ):
            self._servable_secrets = previous._servable_secrets
        self.published_ns = published_ns
        self.translator_version = translator_version
        self.loaded_at = time.monotonic()
        # The SotW responses of this snapshot, built once and shared by the streams that send them.
        self.responses = SharedResponses(self.version_info)
        # Bytes per type, computed on first use; carried over from `previous` (the predecessor, not kept)
        # by looking at the changed names only, so a version costs what it changed, not what it holds.
        self._sizes: dict[str, int] = {}
        if inherit and previous is not None:
            self._inherit_sizes(previous)

    def of(self, type_url: str) -> Mapping[str, CachedResource]:
        """name -> resource for one type (empty for a type the scope does not have)."""
        return self.resources.get(type_url, _EMPTY)

    def servable(self, type_url: str) -> Mapping[str, CachedResource]:
        """What streams may send of one type: every resource, but for Secrets only those a listener or a
        cluster of this snapshot names. The Secret map is built on first use and shared with the
        successors that change neither Secrets nor references."""
        if type_url != SECRET:
            return self.of(type_url)
        servable = self._servable_secrets
        if servable is None:
            secrets, refs = self.of(SECRET), self.secret_refs
            if len(refs) < len(secrets):
                servable = {n: r for n in refs if (r := secrets.get(n)) is not None}
            else:
                servable = {n: r for n, r in secrets.items() if n in refs}
            self._servable_secrets = servable
        return servable

    def _count_refs(self, previous: Snapshot | None) -> Mapping[str, int]:
        """The Secret reference counts: from the predecessor's, adjusted by the listeners and clusters in
        `changed` (the only ones that differ); names that become referenced or unreferenced are added to
        `changed[SECRET]`, so streams look at them as if the Secret itself had changed."""
        if previous is None:
            refs: dict[str, int] = {}
            for type_url in REFERRING_TYPES:
                for res in self.of(type_url).values():
                    for name in res.secrets:
                        refs[name] = refs.get(name, 0) + 1
            return refs
        deltas: dict[str, int] = {}
        for type_url in REFERRING_TYPES:
            old, new = previous.of(type_url), self.of(type_url)
            if old is new:
                continue
            for name in self.changed.get(type_url, ()):
                before, after = old.get(name), new.get(name)
                for secret in before.secrets if before is not None else ():
                    deltas[secret] = deltas.get(secret, 0) - 1
                for secret in after.secrets if after is not None else ():
                    deltas[secret] = deltas.get(secret, 0) + 1
        deltas = {name: d for name, d in deltas.items() if d}
        if not deltas:
            return previous.secret_refs
        refs = dict(previous.secret_refs)
        flipped: set[str] = set()
        for name, delta in deltas.items():
            count = refs.get(name, 0)
            if count + delta > 0:
                refs[name] = count + delta
            else:
                refs.pop(name, None)
            if (count > 0) != (count + delta > 0):
                flipped.add(name)
        if flipped:
            changed = dict(self.changed)
            changed[SECRET] = changed.get(SECRET, frozenset()) | flipped
            self.changed = changed
        return refs

    def type_urls(self) -> list[str]:
        return sorted(self.resources, key=type_rank)

    def resource_count(self) -> int:
        return sum(len(m) for m in self.resources.values())

    def size_bytes(self, type_url: str | None = None) -> int:
        """Bytes of the serialized resources (of one type, or all)."""
        types = [type_url] if type_url else list(self.resources)
        return sum(self._type_size(t) for t in types)

    def _type_size(self, type_url: str) -> int:
        size = self._sizes.get(type_url)
        if size is None:
            size = self._sizes[type_url] = sum(r.size for r in self.of(type_url).values())
        return size

    def _inherit_sizes(self, previous: Snapshot) -> None:
        """Sizes of the types `previous` has measured: the same for a map shared with it; for a changed
        type, its size adjusted by the resources named in `changed` (the only names that differ)."""
        for type_url, size in previous._sizes.items():
            old, new = previous.of(type_url), self.of(type_url)
            if new is not old:
                names = self.changed.get(type_url)
                if names is None:
                    continue
                size -= sum(r.size for n in names if (r := old.get(n)) is not None)
                size += sum(r.size for n in names if (r := new.get(n)) is not None)
            self._sizes[type_url] = size

    def __repr__(self) -> str:
        return f"Snapshot({self.scope!r}, v{self.version}, {self.resource_count()} resources)"


# A resource of a new version (None: removed).
Change = tuple[ResourceKey, CachedResource | None]


def next_snapshot(
    served: Snapshot | None,
    *,
    scope: str,
    version: int,
    digest: str,
    changes: Mapping[ResourceKey, CachedResource | None] | Iterable[Change],
    published_ns: int = 0,
    translator_version: str = "",
) -> Snapshot:
    """The snapshot that follows `served` (None: the first one): its resources with `changes` applied
    (None removes a resource). Types that did not change share `served`'s maps, so a version costs what
    it changed, not what it holds; `changed` tells streams which names to look at."""
    by_type: dict[str, dict[str, CachedResource | None]] = {}
    for key, change in changes.items() if isinstance(changes, Mapping) else changes:
        by_type.setdefault(key.type_url, {})[key.name] = change
    resources: dict[str, Any] = dict(served.resources) if served else {}
    for type_url, named in by_type.items():
        old = resources.get(type_url)
        if old is None:
            # A new type: the map of its changes is its map (no copy of a first snapshot's resources).
            current = {n: r for n, r in named.items() if r is not None} if None in named.values() else named
        else:
            current = dict(old)
            for name, res in named.items():
                if res is None:
                    current.pop(name, None)
                else:
                    current[name] = res
        if current:
            resources[type_url] = current
        else:
            resources.pop(type_url, None)
    return Snapshot(
        scope=scope,
        version=version,
        digest=digest,
        resources=resources,
        predecessor=served.version if served else 0,
        # A first snapshot has no predecessor a stream could hold: nothing to compare with.
        changed={t: frozenset(n) for t, n in by_type.items()} if served else None,
        published_ns=published_ns,
        translator_version=translator_version,
        previous=served,
    )
