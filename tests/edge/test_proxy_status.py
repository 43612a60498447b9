"""The edge's proxy status publisher (proxy_status.py) behind in-memory streams and the edge's own
StreamTable, writing to a real KV xdsbus_proxies: writes follow state, not xDS traffic (a whole push
and its ACKs are one write; nothing changed, nothing written), NACKs carry their error, a proxy that
leaves is deleted, live entries are rewritten before the bucket TTL, and the entries of an edge that
stopped writing age out (docs/proxy-status.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from nats.errors import Error as NatsError
from nats.js.api import KeyValueConfig

from tests.edge.envoy_resources import base_config, cluster
from tests.edge.harness import Harness
from xdsbus import proxy_store
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.contract.proxy_status import MAX_ERROR_CHARS, MAX_ID_CHARS, MAX_NAMES_CHARS, proxy_key
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER
from xdsbus.layout import LayoutSettings
from xdsbus.proxy_store import SyncState, sync_state
from xdsbus_dev.harness.processes import NatsServer, eventually
from xdsbus_edge.limits import ByteBudget
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.proxy_status import ProxyStatusPublisher
from xdsbus_edge.registry import StreamTable


@pytest_asyncio.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness(StreamTable(EdgeMetrics()))
    yield h
    await h.close()


async def publisher(bus: Bus, harness: Harness, ttl: float = 30.0) -> ProxyStatusPublisher:
    assert isinstance(harness.registry, StreamTable)
    return ProxyStatusPublisher(
        harness.registry,
        bus,
        await proxy_store.bucket(bus),
        "edge-a",
        ttl=ttl,
        metrics=harness.registry.metrics,
    )


async def test_a_push_and_its_acks_are_one_write_per_proxy(bus: Bus, harness: Harness) -> None:
    base_config(harness.source).commit()
    status = await publisher(bus, harness)
    proxies = [harness.sotw(f"gw-{i}") for i in range(3)]
    for proxy in proxies:
        for type_url in (CLUSTER, LISTENER):
            await proxy.request(type_url)
            await proxy.ack(await proxy.recv())
    assert await status.flush() == 3
    assert await status.flush() == 0, "nothing changed: nothing written"

    harness.source.put(cluster("a", timeout_s=5))
    head = harness.source.commit()
    for proxy in proxies:
        await proxy.ack(await proxy.recv())
    assert await status.flush() == 3
    assert status.metrics is not None and status.metrics.proxy_status_writes.value("put") == 6
    entries = await proxy_store.read_all(bus)
    assert [(e.node_id, e.edge) for e in entries] == [
        ("gw-0", "edge-a"),
        ("gw-1", "edge-a"),
        ("gw-2", "edge-a"),
    ]
    cds, lds = entries[0].types
    assert (cds.type_url, cds.sent, cds.acked, cds.current, cds.pending) == (
        CLUSTER,
        str(head),
        str(head),
        head,
        False,
    )
    assert cds.wildcard and cds.subscribed == ["*"]
    # LDS did not change: no response, yet its view is the head's.
    assert lds.current == head and sync_state(lds, head) is SyncState.SYNCED
    assert sync_state(cds, head + 1) is SyncState.STALE


async def test_a_write_nats_does_not_store_fails_the_flush(bus: Bus, harness: Harness) -> None:
    # The entries go unacknowledged but for the last (proxy_store.put_all): a batch NATS cannot store
    # still fails, and is written again at the next look.
    base_config(harness.source).commit()
    status = await publisher(bus, harness)
    proxies = [harness.sotw(f"gw-{i}") for i in range(3)]
    for proxy in proxies:
        await proxy.request(CLUSTER)
        await proxy.ack(await proxy.recv())
    await bus.js.delete_key_value("xdsbus_proxies")
    with pytest.raises(NatsError):
        await status.flush()
    await bus.js.create_key_value(KeyValueConfig(bucket="xdsbus_proxies"))
    assert await status.flush() == 3
    assert len(await proxy_store.read_all(bus)) == 3


async def test_a_look_lets_the_responses_in_flight_go_first(bus: Bus, harness: Harness) -> None:
    """While responses are being built or written (the edge's ByteBudget), a look waits for them to be
    done, at most one interval."""
    base_config(harness.source).commit()
    budget = ByteBudget(1 << 20)
    assert isinstance(harness.registry, StreamTable)
    status = ProxyStatusPublisher(
        harness.registry, bus, await proxy_store.bucket(bus), "edge-a", ttl=30, interval=0.5, responses=budget
    )
    proxy = harness.sotw("gw-1")
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())

    async with budget.reserve(1000):
        look = asyncio.create_task(status.flush())
        done, _ = await asyncio.wait({look}, timeout=0.2)
        assert not done, "a look wrote while a response was in flight"
    assert await asyncio.wait_for(look, 5) == 1

    # A response that takes longer than an interval holds the look back for that interval only.
    harness.source.put(cluster("a", timeout_s=5))
    harness.source.commit()
    await proxy.ack(await proxy.recv())
    async with budget.reserve(1000):
        started = time.monotonic()
        assert await asyncio.wait_for(status.flush(), 5) == 1
        assert time.monotonic() - started >= 0.5
    assert [e.node_id for e in await proxy_store.read_all(bus)] == ["gw-1"]


async def test_a_nack_is_published_with_its_error_capped(bus: Bus, harness: Harness) -> None:
    base_config(harness.source).commit()
    status = await publisher(bus, harness)
    proxy = harness.sotw("gw-1")
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    harness.source.put(cluster("a", timeout_s=5))
    bad = harness.source.commit()
    await proxy.nack(await proxy.recv(), "invalid cluster a: " + "x" * 5000)
    await status.flush()
    (entry,) = await proxy_store.read_all(bus)
    (cds,) = entry.types
    assert cds.nacked == str(bad) and cds.error.startswith("invalid cluster a: xxx")
    assert len(cds.error) < MAX_ERROR_CHARS + 40
    assert sync_state(cds, bad) is SyncState.NACKED


async def test_a_proxy_that_leaves_is_deleted_and_live_ones_refreshed(bus: Bus, harness: Harness) -> None:
    base_config(harness.source).commit()
    # A TTL so short that every look is due for a refresh.
    status = await publisher(bus, harness, ttl=1e-9)
    stays, leaves = harness.sotw("gw-1"), harness.sotw("gw-2")
    for proxy in (stays, leaves):
        await proxy.request(CLUSTER)
        await proxy.ack(await proxy.recv())
    assert await status.flush() == 2
    await leaves.close()
    # gw-1 rewritten (due), gw-2 deleted.
    assert await status.flush() == 2
    assert [e.node_id for e in await proxy_store.read_all(bus)] == ["gw-1"]
    await stays.close()
    await status.flush()
    assert await proxy_store.read_all(bus) == []


async def test_stop_deletes_every_entry_of_the_edge(bus: Bus, harness: Harness) -> None:
    base_config(harness.source).commit()
    status = await publisher(bus, harness)
    proxy = harness.sotw("gw-1")
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    await status.flush()
    kv = await proxy_store.bucket(bus)
    assert (await kv.get(proxy_key("gw-1", "edge-a"))).value
    await status.stop()
    assert await proxy_store.read_all(bus) == []


async def test_the_entries_of_an_edge_that_died_age_out(tmp_path: Path, harness: Harness) -> None:
    server = NatsServer(tmp_path / "nats", layout=LayoutSettings(proxy_status_ttl=1.0))
    server.start()
    try:
        bus = await connect(BusSettings(url=server.url, proxy_status_ttl=1.0), name="test")
        try:
            base_config(harness.source).commit()
            status = await publisher(bus, harness, ttl=1.0)
            proxy = harness.sotw("gw-1")
            await proxy.request(CLUSTER)
            await proxy.ack(await proxy.recv())
            await status.flush()
            assert [e.node_id for e in await proxy_store.read_all(bus)] == ["gw-1"]

            # The edge stops writing without deleting (a crash, NATS lost): the bucket TTL removes it.
            async def aged_out() -> bool:
                return await proxy_store.read_all(bus) == []

            await eventually(aged_out, timeout=10, what="the entry aged out")
        finally:
            await bus.close()
    finally:
        server.stop()


async def test_an_entry_stays_bounded_whatever_the_proxy_asks(bus: Bus, harness: Harness) -> None:
    base_config(harness.source).commit()
    status = await publisher(bus, harness)
    proxy = harness.sotw("gw-" + "x" * 5000)
    names = [f"{i:04d}-" + "n" * 200 for i in range(600)]
    await proxy.request(ENDPOINT, names)
    await proxy.recv()
    await proxy.request("type.googleapis.com/no.such.Type")
    await status.flush()
    (entry,) = await proxy_store.read_all(bus)
    assert len(entry.node_id) == MAX_ID_CHARS
    (eds,) = entry.types
    assert eds.type_url == ENDPOINT and eds.subscribed_count == 600
    assert eds.subscribed == names[: len(eds.subscribed)]
    assert sum(map(len, eds.subscribed)) <= MAX_NAMES_CHARS < sum(map(len, names))


def test_keys_stay_in_kv_alphabet_and_apart() -> None:
    a = proxy_key("router~10.0.0.1~gw.ns~ns.svc.cluster.local", "edge-0:18000")
    b = proxy_key("router~10.0.0.1~gw_ns~ns.svc.cluster.local", "edge-0:18000")
    assert a != b
    assert all(c.isalnum() or c in "-_." for c in a)
    assert proxy_key("gw-1", "edge-a") == "gw-1.edge-a"
