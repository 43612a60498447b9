"""Per stream and type: what the proxy subscribed to and where the ACK/NACK exchange stands.

The subscription rules follow the xDS spec (docs/xds-protocol.md §1.5, §1.7):
- legacy wildcard: until a proxy has sent any name for a type on this stream, an empty request means
  `*`; once it has sent one, an empty list means "nothing" (SotW) and `*` must be named explicitly;
- names that do not exist yet stay subscribed and are sent when they appear;
- Secrets are never sent by wildcard, legacy or explicit: a proxy gets a Secret only by naming it, as
  Envoy does for each SDS config of its listeners and clusters (docs/design.md §10).
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Set
from typing import Any

from xdsbus.contract.type_urls import SECRET
from xdsbus_edge.snapshot import Snapshot, short_type

WILDCARD = "*"
# Nonces remembered per type to match a late ACK/NACK to the version it answers.
_NONCE_HISTORY = 16
# Names one stream may subscribe to for one type: five times the 20k clusters of the benchmarks. Delta
# subscriptions add up request after request; past this the stream is refused (stream.py, tests/fuzz).
MAX_NAMES_PER_TYPE = 100_000


# SotW subscriptions in use, by hash: streams that subscribe to the same names share one frozenset
# (10,000 proxies of a scope naming the same 10,000 clusters hold one set of them, not 10,000), and the
# shared responses are found by it (shared_responses.py) with an identity check instead of a comparison.
_subscriptions: weakref.WeakValueDictionary[int, frozenset[str]] = weakref.WeakValueDictionary()
_NOTHING: frozenset[str] = frozenset()


def intern_names(names: Iterable[str]) -> frozenset[str]:
    """`names` as the frozenset every stream with that subscription shares (kept while one uses it)."""
    subscription = frozenset(names)
    if not subscription:
        return _NOTHING
    key = hash(subscription)
    held = _subscriptions.get(key)
    if held is not None and held == subscription:
        return held
    # New, or another set with the same hash (then the newer one is shared from now on).
    _subscriptions[key] = subscription
    return subscription


# The bytes a SotW request names a subscription with (sotw_ack.py), by subscription: proxies of one
# build send the same names in the same order, so their streams share the first one's bytes.
_regions: weakref.WeakKeyDictionary[frozenset[str], bytes] = weakref.WeakKeyDictionary()


def shared_region(names: frozenset[str], region: bytes) -> bytes:
    """`region` (the encoded names of a request whose subscription is `names`, interned), or an equal
    bytes object other streams with that subscription already hold."""
    if not names:
        return region
    held = _regions.get(names)
    if held is None:
        _regions[names] = region
        return region
    return held if held == region else region


def version_digest(version: str) -> bytes:
    """A delta resource version a proxy says it holds (`initial_resource_versions`) as the raw digest
    `CachedResource.digest` is compared with: the sha256 hex this edge sends. Any other text matches no
    resource, and "" stays b"" (told it does not exist)."""
    if len(version) == 64:
        try:
            return bytes.fromhex(version)
        except ValueError:
            pass
    return b"\0" + version.encode() if version else b""


class Watch:
    """State shared by SotW and delta: the subscription and the ACK/NACK bookkeeping of one type."""

    def __init__(self, type_url: str) -> None:
        self.type_url = type_url
        self.short = short_type(type_url)
        self.wildcard = False
        # Types a wildcard never covers: private keys go only to a proxy that names them.
        self.named_only = type_url == SECRET
        # True once the proxy has named anything (including "*") for this type: ends legacy wildcard.
        self.explicit = False
        self.names: Set[str] = _NOTHING
        # The snapshot the proxy's view of this type was last brought up to date with.
        self.base: Snapshot | None = None
        self.nonce_sent = ""
        self.version_sent = ""
        self.sent_at: float | None = None
        self.nonce_acked = ""
        self.version_acked = ""
        self.acked_at: float | None = None
        self.version_nacked = ""
        self.nacked_at: float | None = None
        self.last_error = ""
        self.responses = 0
        self._sent_nonces: dict[str, str] = {}

    def interested(self, name: str) -> bool:
        return self.wildcard or name in self.names

    def sent(self, nonce: str, version: str) -> None:
        self.nonce_sent = nonce
        self.version_sent = version
        self.sent_at = time.time()
        self.responses += 1
        self._sent_nonces[nonce] = version
        if len(self._sent_nonces) > _NONCE_HISTORY:
            del self._sent_nonces[next(iter(self._sent_nonces))]

    def version_of(self, nonce: str) -> str | None:
        """The version a response with this nonce carried, if it is recent enough to be remembered."""
        return self._sent_nonces.get(nonce)

    def acked(self, nonce: str, version: str) -> None:
        self.nonce_acked = nonce
        self.version_acked = version
        self.acked_at = time.time()

    def nacked(self, version: str, error: str) -> None:
        self.version_nacked = version
        self.last_error = error
        self.nacked_at = time.time()

    def debug(self) -> dict[str, Any]:
        """What /debug/syncz shows for this type."""
        subscribed: list[str] = sorted(self.names)
        if self.wildcard:
            subscribed.insert(0, WILDCARD)
        return {
            "type_url": self.type_url,
            "sent": self.version_sent or None,
            "nonce_sent": self.nonce_sent or None,
            "sent_at": self.sent_at,
            "acked": self.version_acked or None,
            "nonce_acked": self.nonce_acked or None,
            "acked_at": self.acked_at,
            "nacked": self.version_nacked or None,
            "nacked_at": self.nacked_at,
            "last_error": self.last_error or None,
            "responses": self.responses,
            "subscribed": subscribed,
            "legacy_wildcard": self.wildcard and not self.explicit,
        }


class SotwChange:
    """How a SotW request changed the subscription."""

    __slots__ = ("added", "removed", "wildcard_added", "wildcard_removed")

    def __init__(
        self, added: Set[str], removed: Set[str], wildcard_added: bool, wildcard_removed: bool
    ) -> None:
        self.added = added
        self.removed = removed
        self.wildcard_added = wildcard_added
        self.wildcard_removed = wildcard_removed

    @property
    def grew(self) -> bool:
        return bool(self.added) or self.wildcard_added

    @property
    def shrank(self) -> bool:
        return bool(self.removed) or self.wildcard_removed


class SotwWatch(Watch):
    names: frozenset[str]

    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        # Set when a CDS response went out: the next EDS request is answered even if it looks like an
        # ACK, since a cluster that changed is warming until it receives its ClusterLoadAssignment;
        # the next push sends the assignments of the clusters in `follow` (None: all subscribed).
        self.always_respond = False
        self.follow: set[str] | None = set()
        # The bytes of the names of the proxy's last request for this type, as it sent them (sotw_ack.py):
        # an ACK that repeats them is recognized without parsing them. None: not known.
        self.names_region: bytes | None = None

    def eds_after_cds(self, names: set[str] | None) -> None:
        """Clusters whose assignments are `names` (None: any) were sent to the proxy."""
        if names is None:
            self.follow = None
        elif not self.always_respond:
            self.follow = set(names)
        elif self.follow is not None:
            self.follow |= names
        self.always_respond = True

    def eds_answered(self) -> None:
        self.always_respond = False
        self.follow = set()

    def update(self, resource_names: Iterable[str]) -> SotwChange:
        """Apply a request's `resource_names` (the complete list of what the proxy wants)."""
        requested = set(resource_names)
        if not requested and not self.explicit:
            wildcard, names = True, _NOTHING  # legacy wildcard
        else:
            self.explicit = True
            wildcard = WILDCARD in requested
            requested.discard(WILDCARD)
            names = intern_names(requested)
        wildcard = wildcard and not self.named_only
        change = SotwChange(
            added=names - self.names,
            removed=self.names - names,
            wildcard_added=wildcard and not self.wildcard,
            wildcard_removed=self.wildcard and not wildcard,
        )
        self.wildcard, self.names = wildcard, names
        return change


class DeltaWatch(Watch):
    names: set[str]

    def __init__(self, type_url: str) -> None:
        super().__init__(type_url)
        self.names = set()
        # name -> resource version the proxy holds (the body's sha256, raw); b"" = told it does not exist.
        self.known: dict[str, bytes] = {}
        # Names to send again whatever the proxy holds (ClusterLoadAssignments of clusters just sent).
        self.forced: set[str] = set()

    def subscribe(self, names: Iterable[str], *, first: bool) -> set[str]:
        """Apply `resource_names_subscribe`; the names to (re)send. A name subscribed again is sent again
        ("the client may have forgotten it")."""
        names = list(names)
        if first and not names and not self.explicit:
            self.wildcard = not self.named_only  # legacy wildcard
        fresh: set[str] = set()
        for name in names:
            self.explicit = True
            if name == WILDCARD:
                self.wildcard = not self.named_only
                continue
            self.names.add(name)
            self.known.pop(name, None)
            fresh.add(name)
        return fresh

    def unsubscribe(self, names: Iterable[str]) -> set[str]:
        """Apply `resource_names_unsubscribe`; the names still covered by the wildcard that must be
        answered (resent, or reported removed)."""
        answer: set[str] = set()
        for name in names:
            if name == WILDCARD:
                if self.wildcard:
                    self.wildcard = False
                    self.known = {n: v for n, v in self.known.items() if n in self.names}
                continue
            if name not in self.names:
                continue  # not subscribed: ignore
            self.names.discard(name)
            self.known.pop(name, None)
            if self.wildcard:
                answer.add(name)
        return answer

    def debug(self) -> dict[str, Any]:
        out = super().debug()
        out["known"] = len(self.known)
        return out
