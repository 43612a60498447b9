"""Recognizing a SotW ACK that repeats the subscription from its bytes (xdsbus_edge/sotw_ack.py): it is
taken as that ACK only when parsing it would give the same names, the latest nonce and no error."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_edge.sotw_ack import RepeatedAck, names_region, repeated_ack
from xdsbus_edge.subscriptions import SotwWatch

NAMES = [f"outbound|80||svc-{i:05d}.default.svc.cluster.local" for i in range(2_000)]
NODE = base_pb2.Node(id="gw-1", cluster="gateways")


def _request(names: list[str], nonce: str, version: str = "7", **fields: object) -> bytes:
    request = discovery_pb2.DiscoveryRequest(
        version_info=version, node=NODE, resource_names=names, type_url=ENDPOINT, response_nonce=nonce
    )
    for name, value in fields.items():
        if name == "error":
            request.error_detail.CopyFrom(status_pb2.Status(code=3, message=str(value)))
        else:
            setattr(request, name, value)
    return request.SerializeToString()


def _watch(first: bytes) -> SotwWatch:
    """An EDS watch that took `first` (parsed in full) and sent the response with nonce 3."""
    watch = SotwWatch(ENDPOINT)
    parsed = discovery_pb2.DiscoveryRequest.FromString(first)
    watch.update(parsed.resource_names)
    watch.names_region = names_region(first, parsed)
    watch.sent("3", "8")
    return watch


def test_an_ack_repeating_the_names_is_recognized_with_its_version() -> None:
    watch = _watch(_request(NAMES, nonce="2"))
    others = [SotwWatch(CLUSTER)]
    assert repeated_ack(_request(NAMES, nonce="3", version="8"), [*others, watch], None) == RepeatedAck(
        ENDPOINT, "8", "3"
    )
    # Without the node (Envoy's set_node_on_first_message_only) and on a per-type RPC without type_url.
    bare = discovery_pb2.DiscoveryRequest(version_info="8", resource_names=NAMES, response_nonce="3")
    assert repeated_ack(bare.SerializeToString(), [watch], ENDPOINT) == RepeatedAck(ENDPOINT, "8", "3")
    assert repeated_ack(bare.SerializeToString(), [watch], None) is None


def test_anything_else_is_left_to_the_parser() -> None:
    watch = _watch(_request(NAMES, nonce="2"))
    assert repeated_ack(_request(NAMES[:-1], nonce="3"), [watch], None) is None  # a name fewer
    assert repeated_ack(_request([*NAMES, "x"], nonce="3"), [watch], None) is None  # a name more
    assert repeated_ack(_request(list(reversed(NAMES)), nonce="3"), [watch], None) is None  # reordered
    assert repeated_ack(_request(NAMES, nonce="2"), [watch], None) is None  # a stale nonce
    assert repeated_ack(_request(NAMES, nonce="3", error="bad"), [watch], None) is None  # a NACK
    # Fields out of number order: the same message, other bytes.
    shuffled = _request([], nonce="3") + _request(NAMES, nonce="3", version="")
    assert discovery_pb2.DiscoveryRequest.FromString(shuffled).resource_names == NAMES
    assert repeated_ack(shuffled, [watch], None) is None
    assert repeated_ack(b"\xff\xff", [watch], None) is None
    # A request whose names are not all in one run of bytes is not kept as a region.
    split = _request(NAMES[:5], nonce="", version="") + _request(NAMES[5:], nonce="2", version="")
    assert names_region(split, discovery_pb2.DiscoveryRequest.FromString(split)) is None
