"""A SotW ADS stream playing a proxy, for the edge benchmarks: it asks, receives and ACKs like Envoy.

Benchmarks keep their own client rather than the edge tests' one: those evolve with the tests, and a
benchmark's definition must not move with them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2

ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
# A type no snapshot holds: a request for it is answered (empty) after everything asked before it.
PROBE = "type.googleapis.com/envoy.service.runtime.v3.Runtime"


class SotwProxy:
    """One ADS SotW stream on its own channel."""

    def __init__(self, port: int, node_id: str) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.node = base_pb2.Node(id=node_id, cluster="bench-gateways")
        self.call = self.channel.stream_stream(
            ADS_SOTW,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        self._sent_node = False
        self._probes = 0
        self._probe_nonce = ""

    async def request(
        self, type_url: str, names: Iterable[str] = (), *, nonce: str = "", version: str = ""
    ) -> None:
        """A DiscoveryRequest (the first carries the node)."""
        request = discovery_pb2.DiscoveryRequest(
            type_url=type_url, resource_names=list(names), response_nonce=nonce, version_info=version
        )
        if not self._sent_node:
            request.node.CopyFrom(self.node)
            self._sent_node = True
        await self.call.write(request)

    async def recv(self, timeout: float = 60.0) -> discovery_pb2.DiscoveryResponse:
        response = await asyncio.wait_for(self.call.read(), timeout)
        if response is grpc.aio.EOF:
            raise ConnectionError("the edge ended the stream")
        assert isinstance(response, discovery_pb2.DiscoveryResponse)
        return response

    async def ack(self, response: discovery_pb2.DiscoveryResponse, names: Iterable[str] = ()) -> None:
        await self.request(response.type_url, names, nonce=response.nonce, version=response.version_info)

    async def quiet(self, timeout: float = 60.0) -> None:
        """Return once the edge has answered everything asked so far: requests are handled in order, so
        the answer to a probe comes after any response still pending."""
        self._probes += 1
        names = [f"probe-{i}" for i in range(1, self._probes + 1)]
        await self.request(PROBE, names, nonce=self._probe_nonce)
        while True:
            response = await self.recv(timeout)
            if response.type_url == PROBE:
                self._probe_nonce = response.nonce
                return

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()
