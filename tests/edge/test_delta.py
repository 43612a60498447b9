"""Delta protocol rules (docs/xds-protocol.md §1.4, §1.5, §1.7, §1.9, §1.12) on in-memory streams."""

from __future__ import annotations

from tests.edge.envoy_resources import base_config, cla, cluster, listener, names, route, secret
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET


def start(harness, **kw):
    v = base_config(harness.source).commit()
    return harness.delta(**kw), v


async def test_initial_wildcard_and_named_requests(harness):
    source = harness.source
    proxy, v = start(harness)
    await proxy.request(CLUSTER)  # legacy wildcard
    cds = await proxy.recv()
    assert (cds.type_url, cds.system_version_info, names(cds)) == (CLUSTER, str(v), ["a", "b"])
    # A resource's version is the sha256 of its body, the same on every replica.
    assert {r.name: r.version for r in cds.resources} == {n: source.sha(CLUSTER, n) for n in ("a", "b")}
    await proxy.request(ENDPOINT, ["a", "zz"])
    eds = await proxy.recv()
    assert names(eds) == ["a"]
    assert list(eds.removed_resources) == ["zz"]  # "does not exist", and stays subscribed
    await proxy.ack(cds)
    await proxy.ack(eds)
    assert await proxy.quiet() == []
    source.put(cla("zz", "10.0.0.26"))
    v2 = source.commit()
    r = await proxy.recv()
    assert (r.type_url, r.system_version_info, names(r)) == (ENDPOINT, str(v2), ["zz"])


async def test_a_missing_name_is_reported_once(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["zz"])
    assert list((await proxy.recv()).removed_resources) == ["zz"]
    source.put(cla("a", "10.0.0.30"))
    source.commit()
    assert await proxy.quiet() == []  # not said again


async def test_a_named_resource_removed_and_back_is_sent_again(harness):
    # go-control-plane PR #488: a removed name must stay subscribed, or it is never sent again.
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    await proxy.ack(await proxy.recv())
    source.remove(ENDPOINT, "a")
    source.commit()
    r = await proxy.recv()
    assert (names(r), list(r.removed_resources)) == ([], ["a"])
    source.put(cla("a", "10.0.0.31"))
    v3 = source.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r)) == (str(v3), ["a"])


async def test_wildcard_initial_request_is_answered_even_when_empty(harness):
    proxy, _v = start(harness)
    await proxy.request(SECRET.replace("Secret", "Nothing"))  # a type this scope has nothing of
    r = await proxy.recv()
    assert list(r.resources) == [] and list(r.removed_resources) == [] and r.nonce


async def test_secrets_are_never_sent_by_wildcard(harness):
    # docs/design.md §10: only named Secrets, never by a legacy or explicit wildcard.
    harness.source.put(secret("s2"), listener("l2", secrets=("s2",))).commit()
    proxy = harness.delta()
    await proxy.request(SECRET)
    assert await proxy.quiet() == []
    await proxy.request(SECRET, ["*"])
    assert await proxy.quiet() == []
    await proxy.request(SECRET, ["s2"])
    assert names(await proxy.recv()) == ["s2"]


async def test_named_initial_request_for_nothing_known_is_not_answered(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"], initial={"a": harness.source.sha(ENDPOINT, "a")})
    assert await proxy.quiet() == []


async def test_nack_is_recorded_and_not_resent(harness):
    source = harness.source
    proxy, v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    source.put(cluster("a", timeout_s=2))
    v2 = source.commit()
    r = await proxy.recv()
    assert names(r) == ["a"]  # only what changed
    await proxy.request(CLUSTER, nonce=r.nonce, error="cluster a rejected")
    assert await proxy.quiet() == []
    sync = harness.sync(proxy)["cds"]
    assert (sync["nacked"], sync["last_error"], sync["acked"]) == (str(v2), "cluster a rejected", str(v))
    assert harness.registry.nacks == [("gw-1", CLUSTER, str(v2), "cluster a rejected")]
    source.put(route("r1", "b"))
    source.commit()
    assert await proxy.quiet() == []  # nothing new for CDS: the rejected cluster is not resent
    source.put(cluster("a", timeout_s=3))
    v4 = source.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r)) == (str(v4), ["a"])


async def test_subscription_change_with_a_stale_nonce_is_honored(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    first = await proxy.recv()
    harness.source.put(cla("a", "10.0.0.11"))
    harness.source.commit()
    second = await proxy.recv()
    assert names(second) == ["a"]
    await proxy.request(ENDPOINT, ["b"], nonce=first.nonce)  # stale nonce, new name: still answered
    r = await proxy.recv()
    assert names(r) == ["b"]
    assert harness.registry.expired == []


async def test_legacy_wildcard_and_explicit_names(harness):
    source = harness.source
    proxy, _v = start(harness)
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
    source.put(cluster("b", timeout_s=4))
    source.commit()
    assert await proxy.quiet() == []  # b no longer of interest
    await proxy.request(CLUSTER, unsubscribe=["a"])  # nothing left: no answer
    assert await proxy.quiet() == []
    source.put(cluster("a", timeout_s=4))
    source.commit()
    assert await proxy.quiet() == []
    assert harness.sync(proxy)["cds"]["subscribed"] == []


async def test_an_empty_subscribe_after_names_is_not_a_wildcard(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER, ["a"])
    assert names(await proxy.recv()) == ["a"]
    await proxy.request(CLUSTER)  # later empty requests change nothing
    assert await proxy.quiet() == []
    assert harness.sync(proxy)["cds"]["subscribed"] == ["a"]


async def test_wildcard_can_be_named_explicitly(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    await proxy.ack(await proxy.recv())
    await proxy.request(ENDPOINT, ["*"])
    r = await proxy.recv()
    assert names(r) == ["b"]  # what the wildcard adds; a is held already


async def test_unsubscribing_a_name_not_subscribed_is_ignored(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    await proxy.ack(await proxy.recv())
    await proxy.request(ENDPOINT, unsubscribe=["b"])
    assert await proxy.quiet() == []
    assert harness.sync(proxy)["eds"]["subscribed"] == ["a"]


async def test_wildcard_unsubscribe_of_a_missing_name_reports_it_removed(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.recv()
    await proxy.request(CLUSTER, ["ghost"])
    assert list((await proxy.recv()).removed_resources) == ["ghost"]
    await proxy.request(CLUSTER, unsubscribe=["ghost"])
    assert list((await proxy.recv()).removed_resources) == ["ghost"]


async def test_removed_resources_are_reported(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    harness.source.remove(CLUSTER, "b")
    v2 = harness.source.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r), list(r.removed_resources)) == (str(v2), [], ["b"])


async def test_reconnect_with_initial_resource_versions_skips_unchanged(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    held = {r.name: r.version for r in (await proxy.recv()).resources}
    await proxy.close()
    source.put(cluster("a", timeout_s=6), cluster("c"))
    source.remove(CLUSTER, "b")
    source.commit()
    again = harness.delta()
    await again.request(CLUSTER, initial=held)
    r = await again.recv()
    assert (names(r), list(r.removed_resources)) == (["a", "c"], ["b"])
    # Nothing changed at all: the wildcard request is still answered, with nothing in it.
    held = {"a": source.sha(CLUSTER, "a"), "c": source.sha(CLUSTER, "c")}
    third = harness.delta("gw-3")
    await third.request(CLUSTER, initial=held)
    r = await third.recv()
    assert (names(r), list(r.removed_resources)) == ([], [])
    await third.request(ENDPOINT, ["a"], initial={"a": source.sha(ENDPOINT, "a")})
    assert await third.quiet() == []


async def test_initial_versions_of_names_not_asked_for_are_ignored(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"], initial={"b": harness.source.sha(ENDPOINT, "b")})
    r = await proxy.recv()
    assert (names(r), list(r.removed_resources)) == (["a"], [])
    harness.source.remove(ENDPOINT, "b")
    harness.source.commit()
    assert await proxy.quiet() == []  # b was never of interest: no removal to report


async def test_endpoints_follow_changed_clusters(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    await proxy.request(ENDPOINT, ["a", "b"])
    await proxy.ack(await proxy.recv())
    assert await proxy.quiet() == []
    harness.source.put(cluster("a", timeout_s=8))  # the cluster changes, its endpoints do not
    harness.source.commit()
    cds, eds = await proxy.recv(), await proxy.recv()
    assert (cds.type_url, names(cds)) == (CLUSTER, ["a"])
    assert (eds.type_url, names(eds)) == (ENDPOINT, ["a"])


async def test_push_order(harness):
    proxy, _v = start(harness)
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
    harness.source.put(
        cluster("a", timeout_s=5),
        cla("a", "10.1.0.1"),
        listener("l1", 9090, secrets=("s1",)),
        route("r1", "b"),
        secret("s1", "k"),
    )
    v2 = harness.source.commit()
    got = [await proxy.recv() for _ in range(5)]
    assert [r.type_url for r in got] == [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET]
    assert {r.system_version_info for r in got} == {str(v2)}
    assert await proxy.quiet() == []


async def test_a_stream_that_falls_behind_sends_the_difference_to_the_newest(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    source.put(cluster("c"))
    source.commit()
    source.remove(CLUSTER, "c").put(cluster("d"))
    v3 = source.commit()
    r = await proxy.recv()
    assert (r.system_version_info, names(r), list(r.removed_resources)) == (str(v3), ["d"], [])
    assert await proxy.quiet() == []


async def test_per_type_delta_streams_endpoints_follow_clusters_sent_on_another_stream(harness):
    base_config(harness.source).commit()
    cds = harness.delta(type_url=CLUSTER)
    eds = harness.delta(type_url=ENDPOINT)
    await cds.request()
    await cds.ack(await cds.recv())
    await eds.request(subscribe=["a", "b"])
    await eds.ack(await eds.recv())
    harness.source.put(cluster("b", timeout_s=3))
    v2 = harness.source.commit()
    r = await cds.recv()
    assert (r.system_version_info, names(r)) == (str(v2), ["b"])
    r = await eds.recv()
    assert (r.type_url, names(r)) == (ENDPOINT, ["b"])
