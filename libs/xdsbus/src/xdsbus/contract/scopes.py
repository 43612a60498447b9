"""Scope names shared by the builder and the edge (docs/design.md §5).

A scope is one NATS subject token (`default`, `team-a`), or a derived scope `gateway.<namespace>.<name>`:
the data plane of one Gateway of the `default` scope. A namespace is a DNS label, so the first token
after `gateway.` is always the namespace and the rest (which may hold dots) the Gateway's name.
"""

from __future__ import annotations

import re

DEFAULT_SCOPE = "default"
GATEWAY_SCOPE_PREFIX = "gateway."
# The node metadata naming the Gateway whose derived scope a proxy belongs to: `<namespace>/<name>`.
GATEWAY_METADATA_KEY = "XDSBUS_GATEWAY"
_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_SUBDOMAIN = r"[a-z0-9]([-.a-z0-9]{0,251}[a-z0-9])?"
PLAIN_SCOPE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
GATEWAY_SCOPE = re.compile(rf"^gateway\.{_LABEL}\.{_SUBDOMAIN}$")
GATEWAY_NAME = re.compile(rf"^{_LABEL}/{_SUBDOMAIN}$")


def is_scope(name: str) -> bool:
    """Whether `name` is a valid scope name, plain or derived."""
    return bool(PLAIN_SCOPE.match(name) or GATEWAY_SCOPE.match(name))


def gateway_scope(namespace: str, name: str) -> str:
    """The derived scope of the Gateway `namespace/name`."""
    return f"{GATEWAY_SCOPE_PREFIX}{namespace}.{name}"


def gateway_scope_of(gateway: str) -> str | None:
    """The derived scope of a Gateway given as `namespace/name` (node metadata), or None when that is
    not a Gateway's name."""
    if not GATEWAY_NAME.match(gateway):
        return None
    namespace, name = gateway.split("/", 1)
    return gateway_scope(namespace, name)
