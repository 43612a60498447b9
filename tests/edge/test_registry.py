"""The edge's StreamRegistry (registry.py): streams by proxy, reports as pilot_* metrics, /debug/syncz;
driven by in-memory streams."""

from __future__ import annotations

from tests.edge.envoy_resources import base_config, cluster
from tests.edge.harness import Harness
from xdsbus.contract.type_urls import CLUSTER
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.registry import StreamTable


async def test_stream_table_counts_what_streams_report():
    metrics = EdgeMetrics()
    harness = Harness(StreamTable(metrics))  # the edge's own registry behind in-memory streams
    try:
        base_config(harness.source).commit()
        proxy = harness.sotw("gw-1")
        await proxy.request(CLUSTER)
        cds = await proxy.recv()
        await proxy.ack(cds)
        assert metrics.connected.value("sotw") == 1
        harness.source.put(cluster("a", timeout_s=5))
        v2 = harness.source.commit()
        await proxy.nack(await proxy.recv(), "no")
        await proxy.request(CLUSTER, nonce=cds.nonce, version=cds.version_info)  # stale
        refused = harness.sotw("")
        await refused.request(CLUSTER)
        await refused.status()
        text = metrics.render()
        assert 'pilot_xds_pushes{type="cds"} 2' in text
        assert 'pilot_total_xds_rejects{type="cds"} 1' in text and "pilot_xds_cds_reject 1" in text
        assert 'pilot_xds_expired_nonce{type="cds"} 1' in text
        assert 'xdsbus_edge_streams_refused{reason="no_node"} 1' in text
        assert metrics.convergence.count() == 0  # the push was rejected
        [entry] = harness.registry.syncz()
        assert (entry["proxy"], entry["types"]["cds"]["nacked"]) == ("gw-1", str(v2))
        assert [s.node_id for s in harness.registry.streams_of("gw-1")] == ["gw-1"]
    finally:
        await harness.close()
    assert metrics.connected.value("sotw") == 0 and harness.registry.streams() == []
