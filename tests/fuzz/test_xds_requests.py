"""xDS streams against whatever a stranger can send: DiscoveryRequest and DeltaDiscoveryRequest with random
node metadata, type URLs, names, nonces, versions, error details and sizes, through the edge's protocol
code in the in-memory harness (tests/edge/harness.py). A stream either serves or ends with a gRPC
status; no other exception escapes it, and what it keeps per stream stays bounded however many requests
arrive (docs/design.md §10)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2
from hypothesis import given
from hypothesis import strategies as st

from tests.edge.envoy_resources import base_config, cluster
from tests.edge.harness import Harness, MemoryLink
from tests.edge.proxies import PROBE
from tests.fuzz.budget import fuzz_settings
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus_edge.delta import DeltaStream
from xdsbus_edge.scopes import SCOPE_METADATA_KEY
from xdsbus_edge.sotw import SotwStream
from xdsbus_edge.stream import MAX_TYPES_PER_STREAM
from xdsbus_edge.subscriptions import MAX_NAMES_PER_TYPE

pytestmark = pytest.mark.fuzz

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
# Mostly what the snapshot holds and what a proxy would say, sometimes anything at all.
type_urls = st.sampled_from([*TYPES, PROBE, ""]) | st.text(max_size=40)
# Sizes: now and then a string of up to 256 KiB (a name, a nonce, a NACK's message).
large = st.builds(lambda n, c: c * n, st.integers(1_000, 256 * 1024), st.sampled_from(["a", "é", "\x00"]))
names = st.sampled_from(["a", "b", "l1", "r1", "s1", "*", "missing", ""]) | st.text(max_size=30) | large
nonces = st.sampled_from(["", "1", "2", "3", "4", "5"]) | st.text(max_size=12) | large
versions = st.sampled_from(["", "100", "101", "102"]) | st.text(max_size=12)
errors = st.none() | st.builds(
    status_pb2.Status, code=st.integers(-(2**31), 2**31 - 1), message=st.text(max_size=200) | large
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
scopes = st.sampled_from(["default", "", "other", "a.b", "*", "x" * 65]) | st.text(max_size=70) | json_values


@st.composite
def nodes(draw: st.DrawFn) -> base_pb2.Node | None:
    if draw(st.integers(0, 9)) == 0:
        return None
    node = base_pb2.Node(id=draw(st.sampled_from(["gw-1", ""]) | st.text(max_size=40)))
    metadata = draw(st.dictionaries(st.text(max_size=12), json_values, max_size=4))
    if draw(st.booleans()):
        metadata[SCOPE_METADATA_KEY] = draw(scopes)
    if metadata:
        node.metadata.CopyFrom(struct_pb2.Struct())
        node.metadata.update(metadata)
    return node


@st.composite
def sotw_requests(draw: st.DrawFn) -> discovery_pb2.DiscoveryRequest:
    request = discovery_pb2.DiscoveryRequest(
        type_url=draw(type_urls),
        resource_names=draw(st.lists(names, max_size=8)),
        response_nonce=draw(nonces),
        version_info=draw(versions),
    )
    if (error := draw(errors)) is not None:
        request.error_detail.CopyFrom(error)
    return request


@st.composite
def delta_requests(draw: st.DrawFn) -> discovery_pb2.DeltaDiscoveryRequest:
    request = discovery_pb2.DeltaDiscoveryRequest(
        type_url=draw(type_urls),
        resource_names_subscribe=draw(st.lists(names, max_size=8)),
        resource_names_unsubscribe=draw(st.lists(names, max_size=4)),
        initial_resource_versions=draw(st.dictionaries(names, versions, max_size=4)),
        response_nonce=draw(nonces),
    )
    if (error := draw(errors)) is not None:
        request.error_detail.CopyFrom(error)
    return request


fixed_types = st.none() | st.sampled_from(TYPES)


async def play(delta: bool, fixed: str | None, first: Any, requests: list[Any], pushes: list[bool]) -> None:
    """Open a stream, send the requests (a new snapshot version after each one `pushes` says), close it.
    Raises what the stream raised, unless it ended with a gRPC status."""
    harness = Harness()
    base_config(harness.source)
    harness.source.commit()
    proxy = harness.delta(type_url=fixed) if delta else harness.sotw(type_url=fixed)
    link = proxy.link
    assert isinstance(link, MemoryLink)
    try:
        for i, request in enumerate([first, *requests]):
            if link.task.done():
                break
            await link.send(request)
            if i < len(pushes) and pushes[i]:
                harness.source.put(cluster(f"c{i}"))
                harness.source.commit()
        stream = link.stream
        assert len(stream.watches) <= MAX_TYPES_PER_STREAM
        assert all(len(w.names) <= MAX_NAMES_PER_TYPE for w in stream.watches.values())
    finally:
        await harness.close()


def with_node(request: Any, node: base_pb2.Node | None) -> Any:
    if node is not None:
        request.node.CopyFrom(node)
    return request


@fuzz_settings()
@given(
    fixed_types,
    nodes(),
    sotw_requests(),
    st.lists(sotw_requests(), max_size=12),
    st.lists(st.booleans(), max_size=12),
)
def test_sotw_streams_serve_or_refuse(
    fixed: str | None,
    node: base_pb2.Node | None,
    first: discovery_pb2.DiscoveryRequest,
    requests: list[discovery_pb2.DiscoveryRequest],
    pushes: list[bool],
) -> None:
    asyncio.run(play(False, fixed, with_node(first, node), requests, pushes))


@fuzz_settings()
@given(
    fixed_types,
    nodes(),
    delta_requests(),
    st.lists(delta_requests(), max_size=12),
    st.lists(st.booleans(), max_size=12),
)
def test_delta_streams_serve_or_refuse(
    fixed: str | None,
    node: base_pb2.Node | None,
    first: discovery_pb2.DeltaDiscoveryRequest,
    requests: list[discovery_pb2.DeltaDiscoveryRequest],
    pushes: list[bool],
) -> None:
    asyncio.run(play(True, fixed, with_node(first, node), requests, pushes))


@fuzz_settings(quick=100)
@given(st.binary(max_size=300), st.booleans())
def test_random_bytes_as_requests(data: bytes, delta: bool) -> None:
    """What the gRPC server's deserializer makes of any bytes (request_class.FromString): an error, which
    gRPC answers with a status, or a message the stream serves or refuses."""
    request_class: Any = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
    try:
        request = request_class.FromString(data)
    except Exception as exc:  # protobuf's DecodeError, the only failure a deserializer may have
        assert type(exc).__name__ == "DecodeError", exc
        return
    request.node.id = request.node.id or "gw-1"
    asyncio.run(play(delta, None, request, [request], []))


# ---- bounds: what a stream keeps does not grow with what a proxy sends ---------------------------------


async def flood(stream_class: type[Any], requests: list[Any]) -> tuple[Any, list[str]]:
    """Send the requests on one ADS stream until it ends; the stream and the reasons it was refused for."""
    harness = Harness()
    base_config(harness.source)
    harness.source.commit()
    proxy = harness.delta() if stream_class is DeltaStream else harness.sotw()
    link = proxy.link
    assert isinstance(link, MemoryLink)
    node = base_pb2.Node(id="gw-1")
    requests[0].node.CopyFrom(node)
    try:
        for request in requests:
            if link.task.done():
                break
            await link.send(request)
        return link.stream, [reason for _proxy, reason in harness.registry.refusals]
    finally:
        await harness.close()


@pytest.mark.parametrize("stream_class", [SotwStream, DeltaStream])
async def test_random_type_urls_do_not_grow_a_stream_without_bound(stream_class: type[Any]) -> None:
    request_class: Any = (
        discovery_pb2.DeltaDiscoveryRequest if stream_class is DeltaStream else discovery_pb2.DiscoveryRequest
    )
    requests = [request_class(type_url=f"type.googleapis.com/made.up.T{i}") for i in range(500)]
    stream, refusals = await flood(stream_class, requests)
    assert refusals == ["too_many_types"]
    assert len(stream.watches) == MAX_TYPES_PER_STREAM


async def test_delta_subscriptions_do_not_grow_without_bound() -> None:
    chunk = 10_000
    requests = [
        discovery_pb2.DeltaDiscoveryRequest(
            type_url=ENDPOINT, resource_names_subscribe=[f"n{i}-{j}" for j in range(chunk)]
        )
        for i in range(MAX_NAMES_PER_TYPE // chunk + 2)
    ]
    stream, refusals = await flood(DeltaStream, requests)
    assert refusals == ["too_many_names"]
    # Refused by the request that crossed the cap: it holds at most that one request more.
    assert MAX_NAMES_PER_TYPE < len(stream.watches[ENDPOINT].names) <= MAX_NAMES_PER_TYPE + chunk
