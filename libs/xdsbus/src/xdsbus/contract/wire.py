"""Protobuf wire-format primitives for splicing pre-serialized messages.

The translator assembles RouteConfigurations from cached virtual hosts and the edge assembles xDS
responses from cached resources; both need only varints and length-delimited fields.
"""

from __future__ import annotations

_ONE_BYTE = [bytes((n,)) for n in range(0x80)]


def varint(n: int) -> bytes:
    """Protobuf base-128 varint of a non-negative integer."""
    if n < 0x80:
        return _ONE_BYTE[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field_head(number: int, length: int) -> bytes:
    """The tag and length of a length-delimited field (wire type 2) whose payload follows."""
    return varint((number << 3) | 2) + varint(length)


def field(number: int, payload: bytes) -> bytes:
    """One length-delimited field: tag, length, payload."""
    return field_head(number, len(payload)) + payload
