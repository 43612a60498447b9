"""The edge's gRPC server against bytes that are not a request, or a request with its bytes damaged: every
call ends with a status, and the server keeps serving a well-formed stream afterwards.

grpc.aio binds to one event loop, so this test draws its inputs from a seeded random generator inside
one test rather than from hypothesis (which would run each example in a loop of its own).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

from tests.edge.envoy_resources import base_config
from tests.edge.harness import InMemorySource, RecordingRegistry
from tests.fuzz.budget import QUICK_EXAMPLES
from xdsbus.contract.type_urls import CLUSTER
from xdsbus_edge.server import SERVER_OPTIONS, XdsServer

pytestmark = pytest.mark.fuzz

ADS = "/envoy.service.discovery.v3.AggregatedDiscoveryService/"
METHODS = ("StreamAggregatedResources", "DeltaAggregatedResources")
FUZZING = bool(os.environ.get("XDSBUS_FUZZ_EXAMPLES"))
EXAMPLES = int(os.environ.get("XDSBUS_FUZZ_EXAMPLES") or QUICK_EXAMPLES // 2)


@pytest.fixture
async def edge_port() -> AsyncIterator[int]:
    source = InMemorySource()
    base_config(source)
    source.commit()
    server = grpc.aio.server(options=SERVER_OPTIONS)
    registry: Any = RecordingRegistry()  # a StreamRegistry, as in tests/edge/harness.py
    XdsServer(source, registry).add_to(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield port
    await server.stop(grace=None)


def valid_request(delta: bool) -> bytes:
    node = base_pb2.Node(id="gw-1")
    if delta:
        return discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CLUSTER).SerializeToString()
    return discovery_pb2.DiscoveryRequest(node=node, type_url=CLUSTER).SerializeToString()


def damaged(rng: random.Random, delta: bool) -> bytes:
    """Random bytes, or a valid request with bytes flipped, cut or appended."""
    choice = rng.randrange(3)
    if choice == 0:
        return rng.randbytes(rng.randrange(200))
    data = bytearray(valid_request(delta))
    if choice == 1:
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    return bytes(data[: rng.randrange(len(data))]) + rng.randbytes(rng.randrange(8))


async def exchange(channel: grpc.aio.Channel, method: str, message: bytes) -> grpc.StatusCode | bytes:
    """Send one raw message; the first response, or the status the call ended with."""
    call = channel.stream_stream(ADS + method)()
    try:
        await call.write(message)
        response = await asyncio.wait_for(call.read(), 10)
        if response is not grpc.aio.EOF:
            assert isinstance(response, bytes)
            return response
        return await call.code()
    except grpc.aio.AioRpcError as exc:
        return exc.code()
    finally:
        call.cancel()


async def test_undecodable_requests_end_with_a_status(
    edge_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    # Fixed in make test, random in make fuzz; XDSBUS_FUZZ_SEED replays a failure's seed.
    seed = int(os.environ.get("XDSBUS_FUZZ_SEED") or (random.randrange(2**32) if FUZZING else 13))
    rng = random.Random(seed)
    codes: set[grpc.StatusCode] = set()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{edge_port}") as channel:
        for _ in range(EXAMPLES):
            method = rng.choice(METHODS)
            outcome = await exchange(channel, method, damaged(rng, method.startswith("Delta")))
            if isinstance(outcome, grpc.StatusCode):
                codes.add(outcome)
        # The server survived all of it: a well-formed stream is served.
        for method in METHODS:
            response = await exchange(channel, method, valid_request(method.startswith("Delta")))
            assert isinstance(response, bytes), f"{response} (seed {seed})"
    # Undecodable bytes end the call as an invalid argument, and cost no error log with a traceback (a
    # stranger could flood the log otherwise); a request that decodes is served or refused.
    assert grpc.StatusCode.INVALID_ARGUMENT in codes, f"seed {seed}"
    assert codes <= {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.UNAVAILABLE}, f"{codes} (seed {seed})"
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
