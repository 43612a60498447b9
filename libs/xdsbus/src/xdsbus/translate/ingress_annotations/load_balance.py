"""Load balancing and session affinity (Higress loadbalance.go, N+H).

Priority: cookie affinity (affinity, session-cookie-name or session-cookie-path present) >
upstream-hash-by > load-balance. Hashing policies go on the route; the destination's cluster switches
to RING_HASH so they take effect.
"""

from __future__ import annotations

import msgspec

from xdsbus.model.routes import HashKind, HashPolicy, LbAlgorithm
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, parse_token

DEFAULT_COOKIE_NAME = "INGRESSCOOKIE"
DEFAULT_COOKIE_PATH = "/"

_SIMPLE = {
    "round_robin": LbAlgorithm.ROUND_ROBIN,
    "least_conn": LbAlgorithm.LEAST_REQUEST,
    "least_request": LbAlgorithm.LEAST_REQUEST,
    "random": LbAlgorithm.RANDOM,
}
_UNSUPPORTED = {
    "passthrough": "is not supported (clusters here always balance over their endpoints)",
    "mcp-sse": "is not supported (MCP SSE stateful sessions are not implemented)",
}
_VARIABLES = {
    "$request_uri": HashPolicy(kind=HashKind.HEADER, name=":path"),
    "$host": HashPolicy(kind=HashKind.HEADER, name=":authority"),
    "$remote_addr": HashPolicy(kind=HashKind.SOURCE_IP),
}


class LoadBalanceSpec(msgspec.Struct, frozen=True, kw_only=True):
    lb: LbAlgorithm = LbAlgorithm.ROUND_ROBIN
    hash_policies: tuple[HashPolicy, ...] = ()


def _simple(text: str) -> LbAlgorithm:
    name = text.lower()
    if name in _UNSUPPORTED:
        raise ValueError(_UNSUPPORTED[name])
    if name not in _SIMPLE:
        raise ValueError(f"is not a load balancer ({', '.join(_SIMPLE)})")
    return _SIMPLE[name]


def _hash_by(text: str) -> HashPolicy:
    if text in _VARIABLES:
        return _VARIABLES[text]
    if text.startswith("$http_") and len(text) > len("$http_"):
        return HashPolicy(kind=HashKind.HEADER, name=parse_token(text[6:].replace("_", "-").lower()))
    if text.startswith("$arg_") and len(text) > len("$arg_"):
        return HashPolicy(kind=HashKind.QUERY, name=text[5:])
    raise ValueError("is not one of $request_uri, $host, $remote_addr, $http_<header>, $arg_<parameter>")


def _cookie_path(text: str) -> str:
    if not text.startswith("/"):
        raise ValueError("is not a path (it must start with '/')")
    return text


def parse_load_balance(r: AnnotationReader) -> LoadBalanceSpec | None:
    if r.has("affinity") or r.has("session-cookie-name") or r.has("session-cookie-path"):
        ttl = r.integer("session-cookie-max-age", minimum=0)
        if ttl is None:
            ttl = r.integer("session-cookie-expires", minimum=0)
        cookie = HashPolicy(
            kind=HashKind.COOKIE,
            name=r.value("session-cookie-name", parse_token) or DEFAULT_COOKIE_NAME,
            cookie_path=r.value("session-cookie-path", _cookie_path) or DEFAULT_COOKIE_PATH,
            cookie_ttl_seconds=ttl or 0,
            generate_cookie=True,
        )
        return LoadBalanceSpec(lb=LbAlgorithm.RING_HASH, hash_policies=(cookie,))
    if r.has("upstream-hash-by"):
        policy = r.value("upstream-hash-by", _hash_by)
        if policy is not None:
            return LoadBalanceSpec(lb=LbAlgorithm.RING_HASH, hash_policies=(policy,))
    if r.has("load-balance"):
        lb = r.value("load-balance", _simple)
        if lb is not None:
            return LoadBalanceSpec(lb=lb)
    return None
