"""Edge fixtures: an in-process edge on free ports, a ledger writer, gRPC proxies that close themselves,
and the in-memory harness."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.edge.harness import Harness
from tests.edge.proxies import DeltaProxy, SotwProxy
from tests.edge.support import LedgerWriter, grpc_proxy
from xdsbus.bus import Bus
from xdsbus_edge.app import Edge, EdgeConfig


@pytest.fixture
def ledger(bus: Bus) -> LedgerWriter:
    return LedgerWriter(bus, "default")


@pytest.fixture
async def make_edge(bus: Bus) -> AsyncIterator[Callable[..., Awaitable[Edge]]]:
    edges: list[Edge] = []

    async def make(**config: Any) -> Edge:
        edge = Edge(bus, EdgeConfig(xds_listen="127.0.0.1:0", http_listen="127.0.0.1:0", **config))
        await edge.start()
        edges.append(edge)
        return edge

    yield make
    for edge in edges:
        await edge.stop(grace=0)


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Any]]:
    made: list[SotwProxy | DeltaProxy] = []

    def make(kind: str, port: int, **kw: Any) -> SotwProxy | DeltaProxy:
        client = grpc_proxy(kind, port, **kw)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    """An in-memory source and registry; streams driven without NATS or gRPC."""
    h = Harness()
    yield h
    await h.close()
