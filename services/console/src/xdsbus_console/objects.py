"""The objects view: every status entry of KV xdsbus_status (`xdsbus status`), what the builder decided
about each source object (accepted, rejected and why, warnings) and what sources report about
themselves, filtered by a search."""

from __future__ import annotations

from typing import Any

import msgspec

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus


def matches(status: ObjectStatus, query: str, state: str = "") -> bool:
    """Whether an entry has state `state` (any when empty) and every word of `query` (case-insensitive)
    in its kind, source, key, state, reason, warnings or errors."""
    if state and status.state.value != state:
        return False
    text = " ".join(
        [
            f"{status.kind}/{status.key}",
            status.source,
            status.state.value,
            status.reason,
            *status.warnings,
            *(e.reason for e in status.errors),
            *(c.message for c in status.conditions),
        ]
    ).lower()
    return all(word in text for word in query.lower().split())


async def objects(bus: Bus, query: str = "", state: str = "") -> list[dict[str, Any]]:
    """The matching entries as JSON-ready dicts, sorted by kind, source and key."""
    return [msgspec.to_builtins(s) for s in await status_store.read_all(bus) if matches(s, query, state)]
