"""Bounded edges over real gRPC (issue 13 point 5): the status codes a proxy sees from the xdsbus-edge
command when its request is too large or the edge has no stream left, the refusals counted in /metrics,
and connections ended at their maximum age."""

from __future__ import annotations

import asyncio

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from tests.edge.envoy_resources import base_config, cluster, names
from tests.edge.proxies import node
from tests.edge.support import ADS_SOTW, LedgerWriter, http_get, serving
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus_dev.harness.processes import Service, eventually, free_port, tool, wait_for_port
from xdsbus_edge.limits import EdgeLimits


async def test_an_oversized_request_and_a_stream_too_many_are_refused(
    bus, nats_server, clients, tmp_path
) -> None:
    """The xdsbus-edge command with its limits from a flag and a variable: the status codes a proxy sees."""
    xds_port, http_port, debug_port = free_port(), free_port(), free_port()
    edge = Service(
        [
            tool("xdsbus-edge"),
            "--nats-url",
            nats_server.url,
            "--xds-listen",
            f"127.0.0.1:{xds_port}",
            "--xds-plaintext",
            "true",
            "--http-listen",
            f"127.0.0.1:{http_port}",
            "--debug-listen",
            f"127.0.0.1:{debug_port}",
            "--max-request-bytes",
            "4KiB",
        ],
        tmp_path / "edge.log",
        env={"XDSBUS_MAX_STREAMS": "1"},
    ).start()
    try:
        wait_for_port(http_port)
        await base_config(LedgerWriter(bus)).commit()

        async def ready() -> bool:
            return (await http_get(http_port, "/ready"))[0] == 200

        await eventually(ready, what="/ready 200")

        served = clients("sotw", xds_port, node_id="gw-1")
        await served.request(CLUSTER)
        assert names(await served.recv()) == ["a", "b"]

        assert await _refusal(xds_port, "gw-2", []) == (
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "this edge serves at most 1 streams at once; try another replica",
        )
        _, metrics = await http_get(http_port, "/metrics")
        assert 'xdsbus_edge_streams_refused{reason="too_many_streams"} 1' in metrics
        assert "xdsbus_edge_streams_open 1" in metrics
        await served.close()

        # 300 names of 40 bytes: about 12 KB, three times the limit. (Until the edge has seen the proxy
        # above leave, the refusal may still be for the stream count: the proxy tries again, as Envoy.)
        async def too_large() -> bool:
            code, details = await _refusal(xds_port, "gw-big", [f"cluster-{i:032d}" for i in range(300)])
            assert code == grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
            return "larger than max" in details

        await eventually(too_large, timeout=10, what="the oversized request refused for its size")

        # The slot is free again for the next proxy.
        async def served_again() -> bool:
            again = clients("sotw", xds_port, node_id="gw-3")
            await again.request(CLUSTER)
            try:
                return names(await again.recv()) == ["a", "b"]
            except grpc.aio.AioRpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                return False

        await eventually(served_again, timeout=10, what="a proxy served again")
    finally:
        edge.terminate()


async def _refusal(port: int, node_id: str, names: list[str]) -> tuple[grpc.StatusCode, str]:
    """Open an ADS stream asking for EDS `names`; the status it ends with and its details.

    When the edge's refusal lands while the request is being written, grpc.aio fails the write and ends
    the call as INTERNAL "Internal error from Core" instead of with the edge's status; the proxy then
    tries again, as Envoy does."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        code, details = await _refusal_once(port, node_id, names)
        if code != grpc.StatusCode.INTERNAL or asyncio.get_running_loop().time() > deadline:
            return code, details


async def _refusal_once(port: int, node_id: str, names: list[str]) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.stream_stream(
            ADS_SOTW,
            request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
            response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
        )()
        try:
            # The edge may refuse the stream before the request is written: the write then raises.
            await call.write(
                discovery_pb2.DiscoveryRequest(node=node(node_id), type_url=ENDPOINT, resource_names=names)
            )
            response = await asyncio.wait_for(call.read(), 10)
        except grpc.aio.AioRpcError as exc:
            return exc.code(), exc.details() or ""
        except asyncio.InvalidStateError:
            # grpc.aio refuses a write to a call that has already ended: its status is the refusal.
            return await call.code(), await call.details() or ""
        raise AssertionError(f"{node_id} was served: {response}")


async def test_connections_past_their_maximum_age_are_ended(make_edge, ledger, clients) -> None:
    """Proxies rebalance: a connection older than --max-connection-age gets GOAWAY, its streams end after
    the grace, and the proxy's next connection is served (by this replica or another)."""
    edge = await make_edge(limits=EdgeLimits(max_connection_age=0.5, max_connection_age_grace=0.5))
    await serving(edge, await base_config(ledger).commit())
    proxy = clients("sotw", edge.xds_port, node_id="gw-old")
    await proxy.request(CLUSTER)
    assert names(await proxy.recv()) == ["a", "b"]
    assert await proxy.status(timeout=20) == grpc.StatusCode.UNAVAILABLE

    fresh = clients("sotw", edge.xds_port, node_id="gw-new")
    await fresh.request(CLUSTER)
    assert names(await fresh.recv()) == ["a", "b"]


async def test_a_proxy_that_stops_reading_cannot_hold_the_response_budget(make_edge, ledger, clients) -> None:
    """Room for one CDS in flight, taken by a proxy that asks and never reads: its stream is ended after
    --write-timeout and the room goes to the next proxy."""
    for i in range(1000):
        ledger.put(cluster(f"cluster-{i:04d}-" + "x" * 200))
    await serving(edge := await make_edge(limits=EdgeLimits(write_timeout=1.0)), await ledger.commit())
    snap = edge.cache.current("default")
    assert snap is not None and snap.size_bytes(CLUSTER) > 200_000
    edge.limits.budget.capacity = snap.size_bytes(CLUSTER) + 10 * 1000

    # A client whose HTTP/2 window stays small (no BDP growth): what it does not read, the edge cannot
    # write.
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{edge.xds_port}",
        options=[("grpc.http2.bdp_probe", 0), ("grpc.http2.lookahead_bytes", 16384)],
    )
    stalled = channel.stream_stream(
        ADS_SOTW,
        request_serializer=discovery_pb2.DiscoveryRequest.SerializeToString,
        response_deserializer=discovery_pb2.DiscoveryResponse.FromString,
    )()
    await stalled.write(discovery_pb2.DiscoveryRequest(node=node("gw-stalled"), type_url=CLUSTER))

    async def cut_off() -> bool:
        _, metrics = await http_get(edge.http_port, "/metrics")
        return 'xdsbus_edge_streams_refused{reason="slow_reader"} 1' in metrics

    await eventually(cut_off, timeout=20, what="the stalled stream ended")
    reader = clients("sotw", edge.xds_port, node_id="gw-reads")
    await reader.request(CLUSTER)
    assert len((await reader.recv(timeout=20)).resources) == 1000

    # The reader's reservation is released once the edge's write returns, which may be just after the
    # client holds the response; a reservation the stalled stream kept would never be.
    async def released() -> bool:
        return edge.limits.budget.used == 0

    await eventually(released, timeout=10, what="every reservation released")
    stalled.cancel()
    await channel.close()
