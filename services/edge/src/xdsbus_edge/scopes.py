"""Scopes: which ledger a proxy is served from, named in its node metadata."""

from __future__ import annotations

import re

from envoy.config.core.v3 import base_pb2

from xdsbus.contract.scopes import (
    DEFAULT_SCOPE,
    GATEWAY_METADATA_KEY,
    GATEWAY_SCOPE,
    PLAIN_SCOPE,
    gateway_scope_of,
)

__all__ = ["DEFAULT_SCOPE", "SCOPE_METADATA_KEY", "SCOPE_PATTERN", "scope_of"]

# A scope is one NATS subject token, or a Gateway's derived scope `gateway.<namespace>.<name>`.
SCOPE_PATTERN = re.compile(f"{PLAIN_SCOPE.pattern}|{GATEWAY_SCOPE.pattern}")
SCOPE_METADATA_KEY = "XDSBUS_SCOPE"


def _metadata(node: base_pb2.Node, key: str) -> str:
    value = node.metadata.fields.get(key) if node.HasField("metadata") else None
    if value is None or value.WhichOneof("kind") != "string_value":
        return ""
    return value.string_value


def scope_of(node: base_pb2.Node) -> str:
    """The scope a proxy asks for: with XDSBUS_GATEWAY `<namespace>/<name>`, that Gateway's derived scope
    `gateway.<namespace>.<name>` (docs/design.md §5; derived scopes are the `default` scope's); else
    XDSBUS_SCOPE, or `default`. An XDSBUS_GATEWAY that names no Gateway, or that comes with another
    XDSBUS_SCOPE than `default`, gives a name SCOPE_PATTERN refuses, which the refusal quotes."""
    scope = _metadata(node, SCOPE_METADATA_KEY) or DEFAULT_SCOPE
    gateway = _metadata(node, GATEWAY_METADATA_KEY)
    if not gateway:
        return scope
    derived = gateway_scope_of(gateway)
    if derived is None:
        return f"{GATEWAY_METADATA_KEY}={gateway} (not <namespace>/<name>)"
    if scope != DEFAULT_SCOPE:
        return f"{GATEWAY_METADATA_KEY}={gateway} with {SCOPE_METADATA_KEY}={scope}"
    return derived
