"""Indexes of sets (hostname → objects) that drop a key with its last member."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, KeysView
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)


class SetIndex(Generic[K, V]):
    """key → a set of members, the key dropped with its last member. A key with one member (most
    hostnames: one Service, one slice, one Ingress) holds it bare: an empty set is 216 bytes, and three
    of them per Service and Ingress were 130 bytes per endpoint at 100k (bench builder_memory). Members
    are never sets themselves."""

    def __init__(self) -> None:
        self._held: dict[K, V | set[V]] = {}

    def add(self, key: K, member: V) -> None:
        """Add `member` under `key`."""
        held = self._held.get(key)
        if held is None:
            self._held[key] = member
        elif isinstance(held, set):
            held.add(member)
        elif held != member:
            self._held[key] = {held, member}

    def discard(self, key: K, member: V) -> None:
        """Remove `member` from `key`'s members, and `key` with its last member."""
        held = self._held.get(key)
        if held is None:
            return
        if isinstance(held, set):
            held.discard(member)
            if len(held) == 1:
                self._held[key] = next(iter(held))
        elif held == member:
            del self._held[key]

    def members(self, key: K) -> set[V]:
        """`key`'s members (a new set, or the held one: read it, never change it)."""
        held = self._held.get(key)
        if held is None:
            return set()
        if isinstance(held, set):
            return held
        return {held}

    def pop(self, key: K) -> None:
        """Drop `key` and its members."""
        self._held.pop(key, None)

    def __len__(self) -> int:
        return len(self._held)

    def __repr__(self) -> str:
        return f"SetIndex({self._held!r})"

    def __contains__(self, key: object) -> bool:
        return key in self._held

    def __iter__(self) -> Iterator[K]:
        return iter(self._held)

    def keys(self) -> KeysView[K]:
        """Every key with a member."""
        return self._held.keys()
