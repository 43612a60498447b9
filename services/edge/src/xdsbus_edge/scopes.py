"""Scopes: which ledger a proxy is served from, named in its node metadata."""

from __future__ import annotations

import re

from envoy.config.core.v3 import base_pb2

DEFAULT_SCOPE = "default"
# A scope is one NATS subject token.
SCOPE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
SCOPE_METADATA_KEY = "XDSBUS_SCOPE"


def scope_of(node: base_pb2.Node) -> str:
    """The scope a proxy asks for: node metadata XDSBUS_SCOPE, or `default`."""
    value = node.metadata.fields.get(SCOPE_METADATA_KEY) if node.HasField("metadata") else None
    if value is None or value.WhichOneof("kind") != "string_value" or not value.string_value:
        return DEFAULT_SCOPE
    return value.string_value
