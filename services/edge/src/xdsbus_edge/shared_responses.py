"""SotW responses built once per snapshot and sent, the same bytes object, to every stream that sends them.

Every stream of a scope that subscribes to the same names (or the wildcard) and is brought from the same
version to the same one sends the same response: the same resources, version and type. Only the nonce
made them differ. So the nonce belongs to the response, not to the stream: each response built gets a
number of this edge's own sequence (`_nonces`), and every stream that sends that response sends that
nonce and those bytes: no per-connection serialization and no per-connection copy (docs/design.md §7).

A nonce is still unique per stream over time (docs/xds-protocol.md §1.3, §1.4): two different responses
never share one. A stream may send the same response twice (a repeated request at the same version):
the same bytes under the same nonce, so an ACK or NACK of either is an answer to both. And since a
proxy always answers with the newest nonce it received, a request carrying that nonce that arrives
after the second send was written after the first one, and says nothing the proxy has not seen.
ACK/NACK state stays per stream (subscriptions.Watch): one proxy's NACK of a shared response concerns
that proxy only.

The responses of a snapshot are kept while it is current and dropped when the scope switches to the
next one (`close`); at most `MAX_SHARED_BYTES` of them, past which a stream builds its own (a scope
whose proxies all subscribe to different names). A response for a subscription (an interned frozenset,
subscriptions.intern_names) goes as soon as no stream holds that subscription any more, so a proxy that
keeps changing its names does not fill the cache.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable, Hashable, Iterable

from xdsbus_edge.encoding import sotw_response

# Response bytes kept per snapshot: a few full-state responses of a large scope.
MAX_SHARED_BYTES = 32 << 20

# One sequence for every SotW response this edge builds: two responses never share a nonce.
_nonces = itertools.count(1)


class SharedResponses:
    """The SotW responses of one snapshot, by what they carry: per type, the wildcard (`"*"`), a
    subscription (its interned frozenset, kept only while a stream holds it) or a tuple of names."""

    __slots__ = ("__weakref__", "_bytes", "_closed", "_entries", "_version_info")

    def __init__(self, version_info: str) -> None:
        self._version_info = version_info
        # (type_url, key or id of the subscription) -> (nonce, body, the subscription's weakref or None)
        self._entries: dict[Hashable, tuple[str, bytes, weakref.ref[frozenset[str]] | None]] = {}
        self._bytes = 0
        self._closed = False

    def get(self, type_url: str, key: Hashable, entries: Callable[[], Iterable[bytes]]) -> tuple[str, bytes]:
        """(nonce, serialized DiscoveryResponse) for the response of `type_url` that `key` stands for;
        built from `entries()` (see encoding.sotw_response) by the first stream that sends it."""
        subscription = key if isinstance(key, frozenset) else None
        # A subscription by identity: interned, so equal sets are the same object (and hashing one of
        # 10,000 names for every stream is what interning saves).
        full_key = (type_url, id(key)) if subscription is not None else (type_url, key)
        found = self._entries.get(full_key)
        if found is not None:
            return found[0], found[1]
        nonce = str(next(_nonces))
        body = sotw_response(self._version_info, type_url, nonce, entries())
        if not self._closed and self._bytes + len(body) <= MAX_SHARED_BYTES:
            ref = weakref.ref(subscription, self._forget(full_key)) if subscription is not None else None
            self._entries[full_key] = (nonce, body, ref)
            self._bytes += len(body)
        return nonce, body

    def _forget(self, full_key: Hashable) -> Callable[[weakref.ref[frozenset[str]]], None]:
        """Drops the entry once its subscription is gone (before its id can name another set)."""
        owner = weakref.ref(self)

        def forget(_gone: weakref.ref[frozenset[str]]) -> None:
            responses = owner()
            if responses is not None:
                found = responses._entries.pop(full_key, None)
                if found is not None:
                    responses._bytes -= len(found[1])

        return forget

    def close(self) -> None:
        """Drop the responses: the scope serves a newer snapshot (a stream still pushing this one builds
        its own)."""
        self._entries.clear()
        self._bytes = 0
        self._closed = True

    def __len__(self) -> int:
        return len(self._entries)
