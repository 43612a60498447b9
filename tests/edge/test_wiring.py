"""The edge wired up: real gRPC streams to an in-process edge following a real ledger on NATS, with
/debug/syncz and /metrics over HTTP. The protocol rules themselves are tested on in-memory streams
(test_sotw.py, test_delta.py, test_stream_open.py)."""

from __future__ import annotations

import json

import grpc

from tests.edge.envoy_resources import base_config, cla, cluster, extension_config, names
from tests.edge.support import http_get, serving
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER
from xdsbus_dev.harness.processes import eventually


async def start(ledger, make_edge):
    v = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v)
    return edge, v


async def syncz(edge):
    return json.loads((await http_get(edge.debug_port, "/debug/syncz"))[1])


async def test_sotw_ads_over_grpc_with_syncz_and_metrics(ledger, make_edge, clients):
    edge, v = await start(ledger, make_edge)
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    assert (cds.version_info, names(cds)) == (str(v), ["a", "b"])
    await proxy.ack(cds)
    await proxy.request(ENDPOINT, ["a"])
    eds1 = await proxy.recv()
    await proxy.ack(eds1, ["a"])
    ledger.put(cluster("a", timeout_s=2), cla("a", "10.0.0.7"))
    v2 = await ledger.commit()
    cds2, eds2 = await proxy.recv(), await proxy.recv()
    assert (cds2.type_url, cds2.version_info, eds2.type_url) == (CLUSTER, str(v2), ENDPOINT)
    await proxy.nack(cds2, "cluster a: bad timeout", accepted=str(v))
    await proxy.request(ENDPOINT, ["a", "b"], nonce=eds1.nonce, version=eds1.version_info)  # stale
    assert await proxy.quiet() == []
    sync = (await syncz(edge))[0]
    assert (sync["proxy"], sync["rpc"], sync["scope"]) == ("gw-1", "StreamAggregatedResources", "default")
    assert (sync["types"]["cds"]["nacked"], sync["types"]["cds"]["acked"]) == (str(v2), str(v))
    assert sync["types"]["cds"]["last_error"] == "cluster a: bad timeout"
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert 'pilot_total_xds_rejects{type="cds"} 1' in metrics and "pilot_xds_cds_reject 1" in metrics
    assert 'pilot_xds_expired_nonce{type="eds"} 1' in metrics
    assert 'pilot_xds{variant="sotw"} 1' in metrics


async def test_delta_ads_over_grpc(ledger, make_edge, clients):
    edge, v = await start(ledger, make_edge)
    proxy = clients("delta", edge.xds_port)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    assert (cds.system_version_info, names(cds)) == (str(v), ["a", "b"])
    await proxy.ack(cds)
    ledger.remove(CLUSTER, "b")
    v2 = await ledger.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r), list(r.removed_resources)) == (str(v2), [], ["b"])
    await proxy.ack(r)

    async def acked() -> bool:
        return (await syncz(edge))[0]["types"]["cds"]["acked"] == str(v2)

    await eventually(acked, what="delta CDS ACK in /debug/syncz")


async def test_per_type_rpcs_find_each_other_through_the_registry(ledger, make_edge, clients):
    edge, _v = await start(ledger, make_edge)
    cds_stream = clients("sotw", edge.xds_port, type_url=CLUSTER)
    eds_stream = clients("delta", edge.xds_port, type_url=ENDPOINT)
    await cds_stream.request()
    await cds_stream.ack(await cds_stream.recv())
    await eds_stream.request(subscribe=["a", "b"])
    await eds_stream.ack(await eds_stream.recv())
    ledger.put(cluster("b", timeout_s=3))
    v2 = await ledger.commit()
    assert (await cds_stream.recv()).version_info == str(v2)
    r = await eds_stream.recv()  # the changed cluster's endpoints follow on the other stream
    assert (r.type_url, names(r)) == (ENDPOINT, ["b"])
    rpcs = {e["rpc"] for e in await syncz(edge)}
    assert rpcs == {"StreamClusters", "DeltaEndpoints"}


async def test_ecds_is_served_by_name_on_its_own_rpcs(ledger, make_edge, clients):
    # The WasmPlugin filters' configurations (docs/xds-protocol.md §2): named, never by wildcard.
    ledger.put(extension_config("wasm/ns/p/default", "v1"), extension_config("wasm/ns/q/default"))
    edge, _v = await start(ledger, make_edge)
    sotw = clients("sotw", edge.xds_port, type_url=EXTENSION_CONFIG)
    delta = clients("delta", edge.xds_port, type_url=EXTENSION_CONFIG)
    await sotw.request(EXTENSION_CONFIG, ["wasm/ns/p/default"])
    await delta.request(subscribe=["wasm/ns/p/default"])
    first = await sotw.recv(), await delta.recv()
    assert [(r.type_url, names(r)) for r in first] == [(EXTENSION_CONFIG, ["wasm/ns/p/default"])] * 2
    await sotw.ack(first[0], ["wasm/ns/p/default"])
    await delta.ack(first[1])
    ledger.put(extension_config("wasm/ns/p/default", "v2"))
    v2 = await ledger.commit()
    changed = await sotw.recv(), await delta.recv()
    assert (changed[0].version_info, names(changed[0])) == (str(v2), ["wasm/ns/p/default"])
    assert (changed[1].system_version_info, names(changed[1])) == (str(v2), ["wasm/ns/p/default"])
    rpcs = {e["rpc"] for e in await syncz(edge)}
    assert rpcs == {"StreamExtensionConfigs", "DeltaExtensionConfigs"}


async def test_refusals_end_the_rpc_with_their_status(ledger, make_edge, clients):
    edge, _v = await start(ledger, make_edge)
    foreign = clients("sotw", edge.xds_port, type_url=CLUSTER)
    await foreign.request(LISTENER)
    assert await foreign.status() == grpc.StatusCode.INVALID_ARGUMENT
    anonymous = clients("delta", edge.xds_port, node_id="")
    await anonymous.request(CLUSTER)
    assert await anonymous.status() == grpc.StatusCode.INVALID_ARGUMENT
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert 'xdsbus_edge_streams_refused{reason="wrong_type"} 1' in metrics
    assert 'xdsbus_edge_streams_refused{reason="no_node"} 1' in metrics
