"""SotW protocol rules (xds-protocol.md §1.12) against an in-process edge following a real ledger."""

from __future__ import annotations

import json

import grpc

from tests.edge.support import (
    base_config,
    cla,
    cluster,
    http_get,
    listener,
    names,
    route,
    secret,
    serving,
)
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus_dev.harness.processes import eventually


async def start(ledger, make_edge, clients, **kw):
    v = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v)
    proxy = clients("sotw", edge.xds_port, **kw)
    return edge, proxy, v


async def test_initial_requests_are_answered_with_the_ledger_version(ledger, make_edge, clients):
    _edge, proxy, v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    assert (cds.type_url, cds.version_info, names(cds)) == (CLUSTER, str(v), ["a", "b"])
    await proxy.request(ENDPOINT, ["a", "b"])
    eds = await proxy.recv()
    assert (eds.type_url, eds.version_info, names(eds)) == (ENDPOINT, str(v), ["a", "b"])
    await proxy.ack(cds)
    await proxy.request(LISTENER)
    lds = await proxy.recv()
    assert names(lds) == ["l1"]
    await proxy.ack(eds, ["a", "b"])
    await proxy.request(ROUTE, ["r1"])
    rds = await proxy.recv()
    assert names(rds) == ["r1"]
    await proxy.request(SECRET, ["s1"])
    sds = await proxy.recv()
    assert names(sds) == ["s1"]
    assert await proxy.quiet() == []


async def test_ack_is_not_answered(ledger, make_edge, clients):
    edge, proxy, v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    await proxy.ack(cds)
    await proxy.request(ENDPOINT, ["a"])
    eds = await proxy.recv()
    await proxy.ack(eds, ["a"])
    assert await proxy.quiet() == []
    sync = (await syncz(edge))[0]["types"]
    assert sync["cds"]["acked"] == str(v) and sync["eds"]["acked"] == str(v)


async def test_nack_is_recorded_and_the_rejected_version_not_resent(ledger, make_edge, clients):
    edge, proxy, v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    # Version 2 changes cluster a: pushed, and rejected by the proxy.
    ledger.put(cluster("a", timeout_s=2))
    v2 = await ledger.commit()
    cds2 = await proxy.recv()
    assert cds2.version_info == str(v2)
    await proxy.nack(cds2, "cluster a: bad timeout", accepted=str(v))
    assert await proxy.quiet() == []
    sync = (await syncz(edge))[0]["types"]["cds"]
    assert sync["nacked"] == str(v2)
    assert sync["acked"] == str(v)
    assert sync["last_error"] == "cluster a: bad timeout"
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert 'pilot_total_xds_rejects{type="cds"} 1' in metrics
    assert "pilot_xds_cds_reject 1" in metrics
    # Version 3 changes nothing the proxy holds for CDS: the rejected clusters are not resent.
    ledger.put(cla("b", "10.0.0.9"))
    v3 = await ledger.commit()
    await serving(edge, v3)
    assert await proxy.quiet() == []
    # Version 4 changes the clusters again: the proxy gets it.
    ledger.put(cluster("a", timeout_s=3))
    v4 = await ledger.commit()
    cds4 = await proxy.recv()
    assert (cds4.type_url, cds4.version_info, names(cds4)) == (CLUSTER, str(v4), ["a", "b"])
    await proxy.ack(cds4)

    async def acked_v4() -> bool:
        # The ACK travels to the edge on its own: poll, do not race it.
        return (await syncz(edge))[0]["types"]["cds"]["acked"] == str(v4)

    await eventually(acked_v4, what=f"CDS ACK of version {v4} in /debug/syncz")


async def test_stale_nonce_is_ignored(ledger, make_edge, clients):
    edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(ENDPOINT, ["a"])
    eds1 = await proxy.recv()
    ledger.put(cla("a", "10.0.0.7"))
    await ledger.commit()
    eds2 = await proxy.recv()
    assert eds2.nonce != eds1.nonce
    # A request answering the first response (stale) asks for b: ignored.
    await proxy.request(ENDPOINT, ["a", "b"], nonce=eds1.nonce, version=eds1.version_info)
    assert await proxy.quiet() == []
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert 'pilot_xds_expired_nonce{type="eds"} 1' in metrics
    # The same request on the current nonce is answered.
    await proxy.request(ENDPOINT, ["a", "b"], nonce=eds2.nonce, version=eds2.version_info)
    eds3 = await proxy.recv()
    assert names(eds3) == ["a", "b"]


async def test_legacy_wildcard(ledger, make_edge, clients):
    edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER, [])  # never named anything: wildcard
    r = await proxy.recv()
    assert names(r) == ["a", "b"]
    await proxy.request(CLUSTER, ["*", "a"], nonce=r.nonce, version=r.version_info)  # still everything
    r = await proxy.recv()
    assert names(r) == ["a", "b"]
    await proxy.request(CLUSTER, ["a"], nonce=r.nonce, version=r.version_info)  # drops the wildcard
    r = await proxy.recv()
    assert names(r) == ["a"]
    await proxy.request(CLUSTER, [], nonce=r.nonce, version=r.version_info)  # now means nothing
    r = await proxy.recv()
    assert names(r) == []
    ledger.put(cluster("c"))
    v2 = await ledger.commit()
    await serving(edge, v2)
    assert await proxy.quiet() == []  # c is not subscribed
    sync = (await syncz(edge))[0]["types"]["cds"]
    assert sync["subscribed"] == [] and not sync["legacy_wildcard"]


async def test_named_resource_is_sent_when_it_appears(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(ENDPOINT, ["a", "c"])
    r = await proxy.recv()
    assert names(r) == ["a"]
    await proxy.ack(r, ["a", "c"])
    ledger.put(cluster("c"), cla("c", "10.0.0.3"))
    v2 = await ledger.commit()
    r = await proxy.recv()
    # EDS carries only what changed; c was missing and now exists.
    assert (r.type_url, r.version_info, names(r)) == (ENDPOINT, str(v2), ["c"])


async def test_newly_subscribed_name_is_answered_even_unchanged(ledger, make_edge, clients):
    _edge, proxy, v = await start(ledger, make_edge, clients)
    await proxy.request(ENDPOINT, ["a"])
    r = await proxy.recv()
    await proxy.ack(r, ["a"])
    await proxy.request(ENDPOINT, ["a", "b"], nonce=r.nonce, version=r.version_info)
    r2 = await proxy.recv()
    assert (r2.version_info, names(r2)) == (str(v), ["a", "b"])


async def test_unsubscribe(ledger, make_edge, clients):
    edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(ENDPOINT, ["a", "b"])
    r = await proxy.recv()
    await proxy.request(ENDPOINT, ["a"], nonce=r.nonce, version=r.version_info)
    assert await proxy.quiet() == []  # a name set that only shrank needs no answer
    ledger.put(cla("b", "10.0.0.8"))
    v2 = await ledger.commit()
    await serving(edge, v2)
    assert await proxy.quiet() == []  # b is no longer subscribed
    ledger.put(cla("a", "10.0.0.8"))
    v3 = await ledger.commit()
    r = await proxy.recv()
    assert (r.version_info, names(r)) == (str(v3), ["a"])


async def test_push_order_cds_eds_lds_rds_sds(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    for type_url, subscribed in (
        (SECRET, ["s1"]),
        (ROUTE, ["r1"]),
        (LISTENER, []),
        (ENDPOINT, ["a", "b"]),
        (CLUSTER, []),
    ):
        await proxy.request(type_url, subscribed)
        await proxy.ack(await proxy.recv(), subscribed)
    assert await proxy.quiet() == []
    ledger.put(
        cluster("a", timeout_s=5),
        cla("a", "10.1.0.1"),
        listener("l1", port=9090),
        route("r1", "b"),
        secret("s1", "k2"),
    )
    v2 = await ledger.commit()
    got = [await proxy.recv() for _ in range(5)]
    assert [r.type_url for r in got] == [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET]
    assert {r.version_info for r in got} == {str(v2)}


async def test_eds_follows_every_cds_push(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    await proxy.request(ENDPOINT, ["a", "b"])
    eds = await proxy.recv()
    await proxy.ack(cds)
    await proxy.ack(eds, ["a", "b"])
    assert await proxy.quiet() == []
    # Only cluster a changes, not its endpoints: the CDS push is followed by a's endpoints so a can
    # warm (EDS in SotW may carry only some assignments; b's stays as it is).
    ledger.put(cluster("a", timeout_s=7))
    v2 = await ledger.commit()
    cds2 = await proxy.recv()
    eds2 = await proxy.recv()
    assert (cds2.type_url, eds2.type_url) == (CLUSTER, ENDPOINT)
    assert eds2.version_info == str(v2) and names(eds2) == ["a"]
    await proxy.ack(cds2)
    await proxy.ack(eds2, ["a", "b"])
    assert await proxy.quiet() == []


async def test_eds_request_after_cds_is_answered_on_per_type_streams(ledger, make_edge, clients):
    edge, _, _v = await start(ledger, make_edge, clients)
    cds_stream = clients("sotw", edge.xds_port, type_url=CLUSTER)
    eds_stream = clients("sotw", edge.xds_port, type_url=ENDPOINT)
    await cds_stream.request()
    cds = await cds_stream.recv()
    await cds_stream.ack(cds)
    await eds_stream.request(names=["a", "b"])
    eds = await eds_stream.recv()
    await eds_stream.ack(eds, ["a", "b"])
    ledger.put(cluster("b", timeout_s=9))
    v2 = await ledger.commit()
    cds2 = await cds_stream.recv()
    assert cds2.version_info == str(v2)
    # Envoy re-requests EDS for the changed cluster with an ACK-looking request: it must be answered.
    await eds_stream.request(names=["a", "b"], nonce=eds.nonce, version=eds.version_info)
    eds2 = await eds_stream.recv()
    assert names(eds2) == ["a", "b"] and eds2.version_info == str(v2)
    # Once answered, a plain ACK is not.
    await eds_stream.ack(eds2, ["a", "b"])
    await cds_stream.ack(cds2)

    async def acked() -> bool:
        entries = {e["rpc"]: e for e in await syncz(edge)}
        return entries["StreamEndpoints"]["types"]["eds"]["acked"] == str(v2)

    await eventually(acked, what="EDS ACK recorded")
    assert eds_stream.call.done() is False


async def test_per_type_stream_rejects_a_foreign_type(ledger, make_edge, clients):
    edge, _, _v = await start(ledger, make_edge, clients)
    stream = clients("sotw", edge.xds_port, type_url=CLUSTER)
    await stream.request(LISTENER)
    assert await stream.status() == grpc.StatusCode.INVALID_ARGUMENT


async def test_ads_requires_type_url_and_node(ledger, make_edge, clients):
    edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request("")
    assert await proxy.status() == grpc.StatusCode.INVALID_ARGUMENT
    anonymous = clients("sotw", edge.xds_port, node_id="")
    await anonymous.request(CLUSTER)
    assert await anonymous.status() == grpc.StatusCode.INVALID_ARGUMENT


async def syncz(edge):
    return json.loads((await http_get(edge.http_port, "/debug/syncz"))[1])
