"""What one xDS stream keeps does not grow with the number of requests: after a warm-up, thousands more
random SotW and delta requests (new names every time, stale and unknown nonces, NACKs with new messages)
leave the memory the stream holds where it was, as tracemalloc measures it."""

from __future__ import annotations

import gc
import logging
import random
import tracemalloc
from typing import Any

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from tests.edge.envoy_resources import base_config
from tests.edge.harness import Harness, MemoryLink, RecordingRegistry
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus_edge.stream import XdsStream

pytestmark = pytest.mark.fuzz

TYPES = (CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET)
WARM_UP = 300
MORE = 1500
# Allocator and interpreter noise over a run (measured: 2-7 kB); a leak of 16 bytes a request is more.
SLACK = 24 * 1024


class QuietRegistry(RecordingRegistry):
    """Keeps the streams, writes nothing down (the recording lists would grow with every response)."""

    def responded(self, stream: XdsStream, type_url: str, size: int, seconds: float) -> None:
        pass

    def nacked(self, stream: XdsStream, type_url: str, version: str, error: str) -> None:
        pass

    def expired_nonce(self, stream: XdsStream, type_url: str) -> None:
        pass

    def converged(self, stream: XdsStream, seconds: float) -> None:
        pass


def request(rng: random.Random, delta: bool, i: int, last: dict[str, list[str]]) -> Any:
    """A request with names never sent before, a random nonce and, one time in four, a NACK. A delta
    request drops the names the previous one of its type subscribed (`last`), as SotW replaces them."""
    type_url = rng.choice(TYPES)
    fresh = [f"n{i}-{j}-{rng.getrandbits(32)}" for j in range(rng.randrange(20))]
    dropped, last[type_url] = last.get(type_url, []), fresh
    nonce = rng.choice(["", str(rng.randrange(i + 2)), f"x{rng.getrandbits(64)}"])
    error = status_pb2.Status(code=13, message=f"rejected {i} {'e' * rng.randrange(500)}")
    if delta:
        r: Any = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url,
            resource_names_subscribe=fresh,
            resource_names_unsubscribe=dropped,
            response_nonce=nonce,
        )
    else:
        r = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=fresh, response_nonce=nonce)
    if rng.randrange(4) == 0:
        r.error_detail.CopyFrom(error)
    return r


async def drain(link: MemoryLink) -> None:
    """Read every response written so far (MemoryLink.send returns once the request is handled)."""
    while True:
        try:
            if await link.read(timeout=0) is None:
                return
        except TimeoutError:
            return


def held() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


@pytest.mark.parametrize("delta", [False, True], ids=["sotw", "delta"])
async def test_a_stream_holds_the_same_memory_after_thousands_more_requests(
    delta: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)  # NACK warnings would pile up in the log capture, not in the stream
    rng = random.Random(7)
    last: dict[str, list[str]] = {}
    harness = Harness(QuietRegistry())
    base_config(harness.source)
    harness.source.commit()
    proxy = harness.delta() if delta else harness.sotw()
    link = proxy.link
    assert isinstance(link, MemoryLink)
    tracemalloc.start()
    try:
        first = request(rng, delta, 0, last)
        first.node.CopyFrom(base_pb2.Node(id="gw-1"))
        await link.send(first)
        for i in range(1, WARM_UP):
            await link.send(request(rng, delta, i, last))
            await drain(link)
        before = held()
        for i in range(WARM_UP, WARM_UP + MORE):
            await link.send(request(rng, delta, i, last))
            await drain(link)
        after = held()
        served = not link.task.done()
    finally:
        tracemalloc.stop()
        await harness.close()
    assert served, harness.registry.refusals
    assert after - before < SLACK, f"{after - before} bytes more after {MORE} requests"
