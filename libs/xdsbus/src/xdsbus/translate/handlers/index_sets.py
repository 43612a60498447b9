"""Indexes of sets (hostname → objects) that drop a key with its last member."""

from __future__ import annotations

from collections.abc import Hashable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


def discard(index: dict[K, set[V]], key: K, member: V) -> None:
    """Remove `member` from `index[key]`, and the key with its last member: hostnames come and go, and the
    builder runs for months."""
    members = index.get(key)
    if members is None:
        return
    members.discard(member)
    if not members:
        del index[key]
