"""What an edge publishes about each proxy it serves, in KV `xdsbus_proxies` (docs/proxy-status.md): one
`ProxyStatus` per proxy and edge, as JSON, under `proxy_key(node_id, edge)`.

Sizes are bounded so an entry stays small whatever the proxy asks: the six xDS types only, at most
MAX_NAMES subscribed names per type and MAX_NAMES_CHARS of them (with the true count beside them),
MAX_ERROR_CHARS of a NACK's error and MAX_ID_CHARS of the node id, cluster and peer."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import msgspec

# Subscribed names kept per type; `subscribed_count` says how many there were.
MAX_NAMES = 500
# Characters of the names listed per type, all together.
MAX_NAMES_CHARS = 32 * 1024
# Characters of a NACK's error kept (Envoy's messages are far shorter; the edge logs them whole).
MAX_ERROR_CHARS = 2048
# Characters of a node id, cluster or peer kept (Envoy's are far shorter).
MAX_ID_CHARS = 1024

_UNSAFE = re.compile(r"[^-_a-zA-Z0-9]")


def _token(text: str, limit: int) -> str:
    """`text` folded into one KV key token, with a hash of the original when folding lost anything."""
    folded = _UNSAFE.sub("_", text)[:limit] or "_"
    if folded == text:
        return folded
    return f"{folded}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"


def proxy_key(node_id: str, edge: str) -> str:
    """KV key of one proxy's entry as one edge serves it: `<node>.<edge>`, each folded to KV's alphabet
    (two node ids that fold alike still get two keys)."""
    return f"{_token(node_id, 120)}.{_token(edge, 60)}"


def cap_error(error: str) -> str:
    """A NACK's error, cut to MAX_ERROR_CHARS."""
    if len(error) <= MAX_ERROR_CHARS:
        return error
    return f"{error[:MAX_ERROR_CHARS]}... ({len(error) - MAX_ERROR_CHARS} more characters)"


def cap_id(text: str) -> str:
    """A node id, cluster or peer, cut to MAX_ID_CHARS."""
    return text[:MAX_ID_CHARS]


def listed_names(names: Iterable[str]) -> list[str]:
    """The names an entry lists, from `names` in order: at most MAX_NAMES and MAX_NAMES_CHARS of them."""
    listed: list[str] = []
    chars = 0
    for name in names:
        chars += len(name)
        if len(listed) >= MAX_NAMES or chars > MAX_NAMES_CHARS:
            break
        listed.append(name)
    return listed


class TypeSync(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Where one resource type of one proxy stands.

    `sent`, `acked` and `nacked` are version_info strings (the ledger version, docs/design.md §7);
    `current` is the ledger version the proxy's view of this type was last brought up to, whether that
    took a response or nothing of the type changed; `pending` is true while the last response awaits its
    ACK or NACK."""

    type_url: str
    sent: str = ""
    acked: str = ""
    nacked: str = ""
    error: str = ""
    current: int = 0
    pending: bool = False
    sent_at: float = 0.0
    acked_at: float = 0.0
    nacked_at: float = 0.0
    # "*" among the names for a wildcard subscription; at most MAX_NAMES of `subscribed_count`.
    wildcard: bool = False
    subscribed: list[str] = []
    subscribed_count: int = 0


class ProxyStatus(msgspec.Struct, frozen=True, kw_only=True):
    """One proxy as one edge serves it: who it is, since when, and each type's sync state (in push
    order: CDS, EDS, LDS, RDS, SDS, ECDS)."""

    node_id: str
    scope: str
    edge: str
    connected_at: float
    updated_at: float
    # The ledger version the edge serves the proxy (its streams' snapshot).
    version: int = 0
    # `sotw` or `delta`, and the RPCs of its streams (one for ADS, one per type otherwise).
    mode: str = ""
    rpcs: list[str] = []
    cluster: str = ""
    peer: str = ""
    types: list[TypeSync] = []
