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
whose proxies all subscribe to different names).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Iterable

from xdsbus_edge.encoding import sotw_response

# Response bytes kept per snapshot: a few full-state responses of a large scope.
MAX_SHARED_BYTES = 32 << 20

# One sequence for every SotW response this edge builds: two responses never share a nonce.
_nonces = itertools.count(1)


class SharedResponses:
    """The SotW responses of one snapshot, by what they carry (type and subscription or names)."""

    __slots__ = ("_bytes", "_closed", "_entries", "_version_info")

    def __init__(self, version_info: str) -> None:
        self._version_info = version_info
        self._entries: dict[Hashable, tuple[str, bytes]] = {}
        self._bytes = 0
        self._closed = False

    def get(self, type_url: str, key: Hashable, entries: Callable[[], Iterable[bytes]]) -> tuple[str, bytes]:
        """(nonce, serialized DiscoveryResponse) for the response of `type_url` that `key` stands for;
        built from `entries()` (see encoding.sotw_response) by the first stream that sends it."""
        full_key = (type_url, key)
        found = self._entries.get(full_key)
        if found is not None:
            return found
        nonce = str(next(_nonces))
        body = sotw_response(self._version_info, type_url, nonce, entries())
        if not self._closed and self._bytes + len(body) <= MAX_SHARED_BYTES:
            self._entries[full_key] = (nonce, body)
            self._bytes += len(body)
        return nonce, body

    def close(self) -> None:
        """Drop the responses: the scope serves a newer snapshot (a stream still pushing this one builds
        its own)."""
        self._entries.clear()
        self._bytes = 0
        self._closed = True

    def __len__(self) -> int:
        return len(self._entries)
