"""Bounded edges (issue 13 point 5, services/edge/src/xdsbus_edge/limits.py): open streams, requests
queued per stream, response bytes in flight, on in-memory streams; scopes per edge (allow-list, cap,
idle release) on a SnapshotCache following a real NATS ledger."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.service.discovery.v3 import discovery_pb2

from tests.edge.envoy_resources import base_config, names
from tests.edge.harness import Harness, MemoryLink
from tests.edge.proxies import node
from tests.edge.support import LedgerWriter
from xdsbus.bus import LEDGER_STREAM, Bus
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_dev.harness.processes import eventually
from xdsbus_edge.cache import SnapshotCache
from xdsbus_edge.interfaces import ScopeRefused
from xdsbus_edge.limits import ByteBudget, EdgeLimits, StreamLimits, parse_bytes
from xdsbus_edge.sotw import SotwStream


def _stream(harness: Harness, limits: StreamLimits) -> tuple[SotwStream, MemoryLink]:
    link = MemoryLink(discovery_pb2.DiscoveryResponse)
    registry: Any = harness.registry
    stream = SotwStream(harness.source, registry, "sotw:ADS", None, link, limits)
    link.stream = stream
    return stream, link


async def _burst(requests: list[Any]) -> AsyncIterator[Any]:
    # Every request is there at once, as from a proxy writing faster than the edge reads.
    for request in requests:
        yield request


def _acks(count: int) -> list[discovery_pb2.DiscoveryRequest]:
    first = discovery_pb2.DiscoveryRequest(node=node(), type_url=CLUSTER)
    return [first] + [
        discovery_pb2.DiscoveryRequest(type_url=CLUSTER, response_nonce="1", version_info="100")
        for _ in range(count - 1)
    ]


async def test_a_proxy_flooding_requests_is_cut_off(harness: Harness) -> None:
    base_config(harness.source).commit()
    limits = StreamLimits(EdgeLimits(max_queued_requests=5))
    flood, link = _stream(harness, limits)
    with pytest.raises(Exception) as aborted:
        await flood.run(_burst(_acks(20)))
    assert getattr(aborted.value, "code", None) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "requests waiting" in str(aborted.value)
    assert [reason for _, reason in harness.registry.refusals] == ["request_flood"]
    # Cut off ahead of what was queued: nothing was answered, and the stream let go of its slot.
    assert link._responses.qsize() == 0
    assert limits.gate.open == 0

    # The same requests within the bound are served: the stream ends normally when the proxy does.
    calm, link = _stream(harness, StreamLimits(EdgeLimits(max_queued_requests=50)))
    await calm.run(_burst(_acks(20)))
    assert names(link._responses.get_nowait()) == ["a", "b"]


async def test_streams_beyond_the_maximum_are_refused(harness: Harness) -> None:
    base_config(harness.source).commit()
    limits = StreamLimits(EdgeLimits(max_streams=1))
    first, first_link = _stream(harness, limits)
    requests: asyncio.Queue[Any] = asyncio.Queue()

    async def held() -> AsyncIterator[Any]:
        while (request := await requests.get()) is not None:
            yield request

    requests.put_nowait(_acks(1)[0])
    task = asyncio.create_task(first.run(held()))
    await eventually(lambda: _true(first_link._responses.qsize() == 1), timeout=5, what="first stream served")
    second, _ = _stream(harness, limits)
    with pytest.raises(Exception) as aborted:
        await second.run(_burst(_acks(1)))
    assert getattr(aborted.value, "code", None) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert ("", "too_many_streams") in harness.registry.refusals
    requests.put_nowait(None)
    await task
    # Once the first ended, a new stream is served.
    third, third_link = _stream(harness, limits)
    await third.run(_burst(_acks(1)))
    assert third_link._responses.qsize() == 1


async def _true(value: bool) -> bool:
    return value


async def test_response_bytes_in_flight_stay_under_the_budget(harness: Harness) -> None:
    """Streams reserve what their responses may take before building them: with room for one CDS at a
    time, each of many streams still gets its complete response, and everything reserved is given back."""
    base_config(harness.source).commit()
    snap = harness.source.current("default")
    assert snap is not None
    cds_bytes = snap.size_bytes(CLUSTER)
    limits = StreamLimits(EdgeLimits(max_response_bytes=cds_bytes + 16))
    written: list[int] = []
    in_flight: list[int] = []

    class SlowLink(MemoryLink):
        async def write(self, message: bytes) -> None:
            in_flight.append(limits.budget.used)
            await asyncio.sleep(0.01)  # the proxy reads slowly: the bytes stay in flight meanwhile
            written.append(len(message))
            await super().write(message)

    links = []
    runs = []
    for i in range(6):
        link = SlowLink(discovery_pb2.DiscoveryResponse)
        registry: Any = harness.registry
        stream = SotwStream(harness.source, registry, "sotw:ADS", None, link, limits)
        request = discovery_pb2.DiscoveryRequest(node=node(f"gw-{i}"), type_url=CLUSTER)
        links.append(link)
        runs.append(stream.run(_burst([request])))
    await asyncio.gather(*runs)
    assert [names(link._responses.get_nowait()) for link in links] == [["a", "b"]] * 6
    assert max(in_flight) <= limits.budget.capacity
    assert limits.budget.peak <= limits.budget.capacity
    assert limits.budget.used == 0 and limits.budget.waiting == 0
    # The reservations made streams take turns (each held a whole CDS), not all write at once.
    assert max(in_flight) < 2 * cds_bytes


async def test_an_ack_reserves_nothing_and_a_change_reserves_what_changed(harness: Harness) -> None:
    base_config(harness.source).commit()
    limits = StreamLimits(EdgeLimits(max_response_bytes=1_000_000))
    proxy = harness.sotw()
    link = proxy.link
    assert isinstance(link, MemoryLink)
    link.stream.limits = limits
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    await proxy.ack(cds)
    await proxy.request(ENDPOINT, ["a", "b"])
    eds = await proxy.recv()
    await proxy.ack(eds, ["a", "b"])
    stream = link.stream
    ack = discovery_pb2.DiscoveryRequest(
        type_url=ENDPOINT, resource_names=["a", "b"], response_nonce=eds.nonce, version_info=eds.version_info
    )
    assert stream._request_bytes(ack) == 0
    grow = discovery_pb2.DiscoveryRequest(
        type_url=ENDPOINT, resource_names=["a"], response_nonce=eds.nonce, version_info=eds.version_info
    )
    assert stream._request_bytes(grow) > 0
    snap = harness.source.current("default")
    assert snap is not None
    harness.source.put(*_cla_a_changed())
    v = harness.source.commit()
    new = harness.source.current("default")
    assert new is not None and new.version == v
    # Only the changed assignment (not every type) is reserved for the push.
    assert 0 < stream._push_bytes(new) < snap.size_bytes(ENDPOINT)
    await proxy.close()


def _cla_a_changed() -> list[Any]:
    from tests.edge.envoy_resources import cla

    return [cla("a", "10.9.9.9")]


async def test_the_byte_budget_is_first_come_first_served() -> None:
    budget = ByteBudget(100)
    order: list[str] = []
    assert await budget.acquire(80) == 80

    async def take(label: str, size: int) -> None:
        got = await budget.acquire(size)
        order.append(label)
        budget.release(got)

    big = asyncio.create_task(take("big", 500))  # more than the capacity: cut to it, runs alone
    await asyncio.sleep(0)
    small = asyncio.create_task(take("small", 10))  # would fit now, but waits its turn
    await asyncio.sleep(0)
    assert order == [] and budget.waiting == 2
    budget.release(80)
    await asyncio.gather(big, small)
    assert order == ["big", "small"]
    assert budget.used == 0

    # A waiter that is cancelled gives its place back.
    await budget.acquire(100)
    waiter = asyncio.create_task(budget.acquire(50))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.waiting == 0
    budget.release(100)
    assert budget.used == 0


def test_sizes_read_with_units() -> None:
    assert parse_bytes("4MiB") == 4 * 1024 * 1024
    assert parse_bytes("512KiB") == 512 * 1024
    assert parse_bytes("1000") == 1000
    for bad in ("", "MiB", "4XB", "0"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_bytes(bad)


# ---- scopes: allow-list, cap, idle release, on a real ledger ------------------------------------------


async def _consumers(bus: Bus) -> int:
    info = await bus.js.stream_info(LEDGER_STREAM)
    return int(info.state.consumer_count or 0)


async def test_scopes_are_allowed_capped_and_released_when_idle(bus: Bus) -> None:
    for scope in ("team-a", "team-b"):
        await base_config(LedgerWriter(bus, scope)).commit()
    before = await _consumers(bus)
    cache = SnapshotCache(
        bus,
        scopes=(),
        lazy_wait=5.0,
        allowed_scopes=("team-a", "team-b"),
        max_scopes=1,
        idle_timeout=0.3,
    )
    await cache.start()
    try:
        with pytest.raises(ScopeRefused) as refused:
            await cache.first_snapshot("team-c")
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
        assert cache.scopes() == []

        snap = await cache.first_snapshot("team-a")
        assert snap is not None and snap.scope == "team-a"

        def wake() -> None:
            return None

        cache.watch("team-a", wake)
        with pytest.raises(ScopeRefused) as refused:
            await cache.first_snapshot("team-b")
        assert refused.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "team-a" in cache.scopes()

        # Watched, the scope stays however long; unwatched, it is let go after the idle timeout, with
        # its JetStream consumer.
        await asyncio.sleep(0.6)
        assert "team-a" in cache.scopes()
        assert await _consumers(bus) > before
        cache.unwatch("team-a", wake)
        await eventually(lambda: _true("team-a" not in cache.scopes()), timeout=10, what="team-a released")
        await eventually(
            lambda: _true_async(_consumers(bus), before), timeout=10, what="team-a's consumer deleted"
        )
        # The cap has room again.
        snap = await cache.first_snapshot("team-b")
        assert snap is not None and snap.scope == "team-b"
    finally:
        await cache.stop()


async def _true_async(count: Any, expected: int) -> bool:
    return bool(await count == expected)


async def test_scopes_named_at_start_are_never_refused_nor_released(bus: Bus) -> None:
    await base_config(LedgerWriter(bus, "pinned")).commit()
    cache = SnapshotCache(bus, scopes=("pinned",), allowed_scopes=("other",), max_scopes=1, idle_timeout=0.1)
    await cache.start()
    try:
        await eventually(lambda: _true(cache.ready()), timeout=10, what="pinned loaded")
        assert await cache.first_snapshot("pinned") is not None
        await asyncio.sleep(0.5)
        assert cache.current("pinned") is not None
    finally:
        await cache.stop()
