"""Recognizing, from its bytes, a SotW ACK that repeats the subscription: without parsing its names.

A SotW proxy repeats its whole subscription in every request: Envoy's ACK of an EDS response at 10,000
clusters carries 10,000 names (about 500 KB). Parsing them into strings and comparing sets would make
each ACK cost what the subscription holds. But an ACK that changes nothing is, byte for byte, the
previous request's names between a new `version_info` (and maybe the node) and the nonce of the latest
response: protobuf writes fields in number order (version_info=1, node=2, resource_names=3, type_url=4,
response_nonce=5, error_detail=6), and a string field has one encoding. So the edge keeps, per type, the
bytes of the names of the proxy's last request (`names_region`), and a request whose bytes are
`[version] [node] <those bytes> [type_url] <the nonce sent last>` and nothing else is that ACK
(`repeated_ack`): a prefix read, one `startswith` and a suffix compare, whatever the number of names.
Anything else (a NACK, a new subscription, another field order, a stale nonce) is parsed in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from envoy.service.discovery.v3 import discovery_pb2

from xdsbus.contract.wire import field
from xdsbus_edge.subscriptions import SotwWatch

_VERSION_TAG = 0x0A  # field 1, length-delimited
_NODE_TAG = 0x12  # field 2


class RepeatedAck(NamedTuple):
    """An ACK of the latest response of a type that keeps the subscription as it is."""

    type_url: str
    version_info: str
    response_nonce: str


def _field_at(data: bytes, pos: int, tag: int) -> tuple[int, int] | None:
    """(start, end) of the payload of a length-delimited field with `tag` at `pos`, or None."""
    if pos >= len(data) or data[pos] != tag:
        return None
    pos += 1
    length = shift = 0
    while pos < len(data) and shift < 35:
        byte = data[pos]
        pos += 1
        length |= (byte & 0x7F) << shift
        if byte < 0x80:
            end = pos + length
            return (pos, end) if end <= len(data) else None
        shift += 7
    return None


def _names_start(data: bytes) -> tuple[int, str] | None:
    """Where the names begin, after a leading version_info and node; and the version_info."""
    version = ""
    pos = 0
    found = _field_at(data, pos, _VERSION_TAG)
    if found is not None:
        try:
            version = data[found[0] : found[1]].decode()
        except UnicodeDecodeError:
            return None
        pos = found[1]
    node = _field_at(data, pos, _NODE_TAG)
    if node is not None:
        pos = node[1]
    return pos, version


def _suffixes(watch: SotwWatch, fixed_type: str | None) -> Iterable[bytes]:
    """How a request that answers the watch's latest response ends: type_url, then that nonce (the
    type_url may be left out on a per-type RPC)."""
    nonce = field(5, watch.nonce_sent.encode())
    yield field(4, watch.type_url.encode()) + nonce
    if fixed_type is not None:
        yield nonce


def repeated_ack(data: bytes, watches: Iterable[SotwWatch], fixed_type: str | None) -> RepeatedAck | None:
    """The ACK `data` is, when it acknowledges the latest response of one of `watches` and names
    exactly what that watch's last request named, in the same bytes; None otherwise (parse it)."""
    start = _names_start(data)
    if start is None:
        return None
    pos, version = start
    for watch in watches:
        names = watch.names_region
        if names is None or not watch.nonce_sent:
            continue
        rest = len(data) - pos - len(names)
        for suffix in _suffixes(watch, fixed_type):
            # Lengths first: the names' bytes are compared only for the one watch that can match.
            if rest == len(suffix) and data.endswith(suffix) and data.startswith(names, pos):
                return RepeatedAck(watch.type_url, version, watch.nonce_sent)
    return None


def names_region(data: bytes, request: discovery_pb2.DiscoveryRequest) -> bytes | None:
    """The bytes of the names of a request parsed in full, when the request is laid out as an ACK
    (version, node, names, type_url, nonce, nothing else), so that the next ACK can be matched against
    them; None otherwise."""
    if request.HasField("error_detail"):
        return None
    start = _names_start(data)
    if start is None:
        return None
    pos = start[0]
    suffix = b"".join(
        (
            field(4, request.type_url.encode()) if request.type_url else b"",
            field(5, request.response_nonce.encode()) if request.response_nonce else b"",
        )
    )
    end = len(data) - len(suffix)
    if end < pos or not data.endswith(suffix):
        return None
    region = data[pos:end]
    # Only names in between (no field repeated out of order): the region is what they encode to.
    names = discovery_pb2.DiscoveryRequest()
    names.resource_names.extend(request.resource_names)
    return region if region == names.SerializeToString() else None
