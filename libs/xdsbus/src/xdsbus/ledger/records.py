"""Ledger version records: building them from a commit, and reading their change lists."""

from __future__ import annotations

from xdsbus.contract.resources import Changes
from xdsbus.proto.ledger.v1 import ledger_pb2

# Change lists above this go to the Object Store so the record stays under NATS's max payload.
INLINE_CHANGES_LIMIT = 768 * 1024


def changes_message(changes: Changes) -> ledger_pb2.Changes:
    """The protobuf form of a commit's changes."""
    msg = ledger_pb2.Changes()
    msg.changed.extend(
        ledger_pb2.ResourceRef(type_url=key.type_url, name=key.name, sha256=res.sha256, size=len(res.body))
        for key, res in changes.changed
    )
    msg.removed.extend(ledger_pb2.RemovedRef(type_url=key.type_url, name=key.name) for key in changes.removed)
    return msg


def changes_object_name(scope: str, version: int) -> str:
    """Object Store name of a version's change list when it is not inline."""
    return f"{scope}.{version:020d}"
