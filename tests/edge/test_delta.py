"""Delta protocol rules (xds-protocol.md §1.7, §1.12) against an in-process edge following a real ledger."""

from __future__ import annotations

import json

from tests.edge.support import base_config, cla, cluster, http_get, listener, names, route, secret, serving
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET


async def start(ledger, make_edge, clients, **kw):
    v = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v)
    return edge, clients("delta", edge.xds_port, **kw), v


async def syncz(edge):
    return json.loads((await http_get(edge.http_port, "/debug/syncz"))[1])


async def test_initial_wildcard_and_named_requests(ledger, make_edge, clients):
    _edge, proxy, v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)  # legacy wildcard
    cds = await proxy.recv()
    assert (cds.type_url, cds.system_version_info, names(cds)) == (CLUSTER, str(v), ["a", "b"])
    assert {r.name: r.version for r in cds.resources} == {n: ledger.sha(CLUSTER, n) for n in ("a", "b")}
    await proxy.request(ENDPOINT, ["a", "zz"])
    eds = await proxy.recv()
    assert names(eds) == ["a"]
    assert list(eds.removed_resources) == ["zz"]  # "does not exist", and stays subscribed
    await proxy.ack(cds)
    await proxy.ack(eds)
    assert await proxy.quiet() == []
    ledger.put(cla("zz", "10.0.0.26"))
    v2 = await ledger.commit()
    r = await proxy.recv()
    assert (r.type_url, r.system_version_info, names(r)) == (ENDPOINT, str(v2), ["zz"])


async def test_wildcard_initial_request_is_answered_even_when_empty(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(SECRET.replace("Secret", "Nothing"))  # a type this scope has nothing of
    r = await proxy.recv()
    assert list(r.resources) == [] and list(r.removed_resources) == [] and r.nonce


async def test_nack_is_recorded_and_not_resent(ledger, make_edge, clients):
    edge, proxy, v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    ledger.put(cluster("a", timeout_s=2))
    v2 = await ledger.commit()
    r = await proxy.recv()
    assert names(r) == ["a"]  # only what changed
    await proxy.request(CLUSTER, nonce=r.nonce, error="cluster a rejected")
    assert await proxy.quiet() == []
    sync = (await syncz(edge))[0]["types"]["cds"]
    assert (sync["nacked"], sync["last_error"], sync["acked"]) == (str(v2), "cluster a rejected", str(v))
    ledger.put(route("r1", "b"))
    v3 = await ledger.commit()
    await serving(edge, v3)
    assert await proxy.quiet() == []  # nothing new for CDS: the rejected cluster is not resent
    ledger.put(cluster("a", timeout_s=3))
    v4 = await ledger.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r)) == (str(v4), ["a"])


async def test_subscription_change_with_a_stale_nonce_is_honored(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(ENDPOINT, ["a"])
    first = await proxy.recv()
    ledger.put(cla("a", "10.0.0.11"))
    await ledger.commit()
    second = await proxy.recv()
    assert names(second) == ["a"]
    await proxy.request(ENDPOINT, ["b"], nonce=first.nonce)  # stale nonce, new name: still answered
    r = await proxy.recv()
    assert names(r) == ["b"]


async def test_legacy_wildcard_and_explicit_names(ledger, make_edge, clients):
    edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)  # [] -> *
    assert names(await proxy.recv()) == ["a", "b"]
    await proxy.request(CLUSTER, ["a"])  # * + a: a is sent again (the client may have forgotten it)
    assert names(await proxy.recv()) == ["a"]
    await proxy.request(CLUSTER, unsubscribe=["a"])  # a is still covered by *: answered with a
    assert names(await proxy.recv()) == ["a"]
    await proxy.request(CLUSTER, ["a"])
    assert names(await proxy.recv()) == ["a"]
    await proxy.request(CLUSTER, unsubscribe=["*"])  # only a now: no answer
    assert await proxy.quiet() == []
    ledger.put(cluster("b", timeout_s=4))
    v2 = await ledger.commit()
    await serving(edge, v2)
    assert await proxy.quiet() == []  # b no longer of interest
    await proxy.request(CLUSTER, unsubscribe=["a"])  # nothing left: no answer
    assert await proxy.quiet() == []
    ledger.put(cluster("a", timeout_s=4))
    v3 = await ledger.commit()
    await serving(edge, v3)
    assert await proxy.quiet() == []
    assert (await syncz(edge))[0]["types"]["cds"]["subscribed"] == []


async def test_wildcard_unsubscribe_of_a_missing_name_reports_it_removed(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    await proxy.recv()
    await proxy.request(CLUSTER, ["ghost"])
    assert list((await proxy.recv()).removed_resources) == ["ghost"]
    await proxy.request(CLUSTER, unsubscribe=["ghost"])
    assert list((await proxy.recv()).removed_resources) == ["ghost"]


async def test_removed_resources_are_reported(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    ledger.remove(CLUSTER, "b")
    v2 = await ledger.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r), list(r.removed_resources)) == (str(v2), [], ["b"])


async def test_reconnect_with_initial_resource_versions_skips_unchanged(ledger, make_edge, clients):
    edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    held = {r.name: r.version for r in (await proxy.recv()).resources}
    await proxy.close()
    ledger.put(cluster("a", timeout_s=6), cluster("c"))
    ledger.remove(CLUSTER, "b")
    v2 = await ledger.commit()
    await serving(edge, v2)
    again = clients("delta", edge.xds_port)
    await again.request(CLUSTER, initial=held)
    r = await again.recv()
    assert (names(r), list(r.removed_resources)) == (["a", "c"], ["b"])
    # Nothing changed at all: the wildcard request is still answered, with nothing in it.
    held = {"a": ledger.sha(CLUSTER, "a"), "c": ledger.sha(CLUSTER, "c")}
    third = clients("delta", edge.xds_port, node_id="gw-3")
    await third.request(CLUSTER, initial=held)
    r = await third.recv()
    assert (names(r), list(r.removed_resources)) == ([], [])
    await third.request(ENDPOINT, ["a"], initial={"a": ledger.sha(ENDPOINT, "a")})
    assert await third.quiet() == []


async def test_endpoints_follow_changed_clusters(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    await proxy.request(ENDPOINT, ["a", "b"])
    await proxy.ack(await proxy.recv())
    assert await proxy.quiet() == []
    ledger.put(cluster("a", timeout_s=8))  # the cluster changes, its endpoints do not
    await ledger.commit()
    cds, eds = await proxy.recv(), await proxy.recv()
    assert (cds.type_url, names(cds)) == (CLUSTER, ["a"])
    assert (eds.type_url, names(eds)) == (ENDPOINT, ["a"])


async def test_push_order(ledger, make_edge, clients):
    _edge, proxy, _v = await start(ledger, make_edge, clients)
    for type_url, subscribe in (
        (SECRET, ["s1"]),
        (ROUTE, ["r1"]),
        (LISTENER, []),
        (ENDPOINT, ["a"]),
        (CLUSTER, []),
    ):
        await proxy.request(type_url, subscribe)
        await proxy.ack(await proxy.recv())
    # Clusters sent are followed by their endpoints, whatever the proxy holds.
    eds = await proxy.recv()
    assert (eds.type_url, names(eds)) == (ENDPOINT, ["a"])
    await proxy.ack(eds)
    assert await proxy.quiet() == []
    ledger.put(
        cluster("a", timeout_s=5),
        cla("a", "10.1.0.1"),
        listener("l1", 9090),
        route("r1", "b"),
        secret("s1", "k"),
    )
    v2 = await ledger.commit()
    got = [await proxy.recv() for _ in range(5)]
    assert [r.type_url for r in got] == [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET]
    assert {r.system_version_info for r in got} == {str(v2)}
    assert await proxy.quiet() == []


async def test_per_type_delta_streams_endpoints_follow_clusters_sent_on_another_stream(
    ledger, make_edge, clients
):
    edge, _, _v = await start(ledger, make_edge, clients)
    cds = clients("delta", edge.xds_port, type_url=CLUSTER)
    eds = clients("delta", edge.xds_port, type_url=ENDPOINT)
    await cds.request()
    await cds.ack(await cds.recv())
    await eds.request(subscribe=["a", "b"])
    await eds.ack(await eds.recv())
    ledger.put(cluster("b", timeout_s=3))
    v2 = await ledger.commit()
    r = await cds.recv()
    assert (r.system_version_info, names(r)) == (str(v2), ["b"])
    r = await eds.recv()
    assert (r.type_url, names(r)) == (ENDPOINT, ["b"])
