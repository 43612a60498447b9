"""A resource as the ledger and the edge see it: its key, its serialized `Any` bytes and their sha256,
and the change list one ledger version carries."""

from __future__ import annotations

import functools

import msgspec

from xdsbus.contract.wire import field, varint


@functools.cache
def _any_head(type_url: str) -> bytes:
    # Field 1 (type_url) in full, then the tag of field 2 (value): the same for every resource of a type.
    return field(1, type_url.encode()) + varint((2 << 3) | 2)


def pack_any(type_url: str, message_bytes: bytes) -> bytes:
    """Serialized google.protobuf.Any, byte-identical to Any(type_url, value).SerializeToString()."""
    return b"".join((_any_head(type_url), varint(len(message_bytes)), message_bytes))


class Resource(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One resource's serialized Any and its digest (a str and bytes: no cycle, hence gc=False)."""

    sha256: str
    body: bytes


class ResourceKey(msgspec.Struct, frozen=True, array_like=True, order=True, gc=False):
    """A resource's identity within a scope: its type URL and name (strings: no cycle, hence gc=False)."""

    type_url: str
    name: str


class Changes(msgspec.Struct, frozen=True):
    """What a commit changed: resources with new bytes, and resources that went away."""

    changed: list[tuple[ResourceKey, Resource]]
    removed: list[ResourceKey]

    def __bool__(self) -> bool:
        return bool(self.changed or self.removed)
