"""Bounded edges over real gRPC (issue 13 point 5): the status codes a proxy sees from the xdsbus-edge
command when its request is too large or the edge has no stream left, the refusals counted in /metrics,
and connections ended at their maximum age."""

from __future__ import annotations

import grpc

from tests.edge.envoy_resources import base_config, names
from tests.edge.support import LedgerWriter, http_get, serving
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

        # 300 names of 40 bytes: about 12 KB, three times the limit.
        oversized = clients("sotw", xds_port, node_id="gw-big")
        await oversized.request(ENDPOINT, [f"cluster-{i:032d}" for i in range(300)])
        assert await oversized.status() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await oversized.close()

        async def slots_free() -> bool:
            return "xdsbus_edge_streams_open 0" in (await http_get(http_port, "/metrics"))[1]

        await eventually(slots_free, timeout=10, what="no stream open")
        served = clients("sotw", xds_port, node_id="gw-1")
        await served.request(CLUSTER)
        assert names(await served.recv()) == ["a", "b"]

        refused = clients("sotw", xds_port, node_id="gw-2")
        await refused.request(CLUSTER)
        assert await refused.status() == grpc.StatusCode.RESOURCE_EXHAUSTED

        _, metrics = await http_get(http_port, "/metrics")
        assert 'xdsbus_edge_streams_refused{reason="too_many_streams"} 1' in metrics
        assert "xdsbus_edge_streams_open 1" in metrics

        # The slot is free again once the proxy holding it leaves.
        await served.close()
        await eventually(slots_free, timeout=10, what="the stream slot given back")
        again = clients("sotw", xds_port, node_id="gw-3")
        await again.request(CLUSTER)
        assert names(await again.recv()) == ["a", "b"]
    finally:
        edge.terminate()


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
