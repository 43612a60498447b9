"""SotW protocol rules (docs/xds-protocol.md §1.3-§1.6, §1.9, §1.12) on in-memory streams."""

from __future__ import annotations

from tests.edge.envoy_resources import base_config, cla, cluster, listener, names, route, secret
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus_edge.stream import MAX_NACK_ERROR_CHARS


def start(harness, **kw):
    v = base_config(harness.source).commit()
    return harness.sotw(**kw), v


async def test_initial_requests_are_answered_with_the_ledger_version(harness):
    proxy, v = start(harness)
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
    assert len({r.nonce for r in (cds, eds, lds, rds, sds)}) == 5


async def test_ack_is_not_answered_and_is_recorded(harness):
    proxy, v = start(harness)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    await proxy.ack(cds)
    await proxy.request(ENDPOINT, ["a"])
    eds = await proxy.recv()
    await proxy.ack(eds, ["a"])
    assert await proxy.quiet() == []
    sync = harness.sync(proxy)
    assert (sync["cds"]["acked"], sync["cds"]["nonce_acked"]) == (str(v), cds.nonce)
    assert sync["eds"]["acked"] == str(v)


async def test_nack_is_recorded_and_the_rejected_version_not_resent(harness):
    source = harness.source
    proxy, v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    source.put(cluster("a", timeout_s=2))
    v2 = source.commit()
    cds2 = await proxy.recv()
    assert cds2.version_info == str(v2)
    await proxy.nack(cds2, "cluster a: bad timeout", accepted=str(v))
    assert await proxy.quiet() == []
    sync = harness.sync(proxy)["cds"]
    assert (sync["nacked"], sync["acked"], sync["last_error"]) == (str(v2), str(v), "cluster a: bad timeout")
    assert harness.registry.nacks == [("gw-1", CLUSTER, str(v2), "cluster a: bad timeout")]
    # Version 3 changes nothing the proxy holds for CDS: the rejected clusters are not resent.
    source.put(cla("b", "10.0.0.9"))
    source.commit()
    assert await proxy.quiet() == []
    # Version 4 changes the clusters again: the proxy gets it, complete.
    source.put(cluster("a", timeout_s=3))
    v4 = source.commit()
    cds4 = await proxy.recv()
    assert (cds4.type_url, cds4.version_info, names(cds4)) == (CLUSTER, str(v4), ["a", "b"])
    await proxy.ack(cds4)
    assert await proxy.quiet() == []
    assert harness.sync(proxy)["cds"]["acked"] == str(v4)


async def test_a_huge_nack_error_is_kept_and_reported_cut(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    source.put(cluster("a", timeout_s=2))
    source.commit()
    await proxy.nack(await proxy.recv(), "x" * 1_000_000)
    assert await proxy.quiet() == []
    kept = harness.sync(proxy)["cds"]["last_error"]
    assert kept == "x" * MAX_NACK_ERROR_CHARS + f"... ({1_000_000 - MAX_NACK_ERROR_CHARS} more characters)"
    assert harness.registry.nacks[-1][3] == kept


async def test_nack_of_the_first_response_keeps_nothing_acked(harness):
    proxy, v = start(harness)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    await proxy.nack(cds, "no")
    assert await proxy.quiet() == []
    sync = harness.sync(proxy)["cds"]
    assert (sync["nacked"], sync["acked"], sync["last_error"]) == (str(v), None, "no")


async def test_nack_error_is_kept_per_proxy(harness):
    source = harness.source
    base_config(source).commit()
    good, bad = harness.sotw("gw-good"), harness.sotw("gw-bad")
    for proxy in (good, bad):
        await proxy.request(LISTENER)
        await proxy.ack(await proxy.recv())
    source.put(listener("l1", port=1))
    v2 = source.commit()
    pushed_good, pushed_bad = await good.recv(), await bad.recv()
    # One response shared by both streams (shared_responses.py): the same nonce, answered per proxy.
    assert pushed_good == pushed_bad
    await good.ack(pushed_good)
    await bad.nack(pushed_bad, "port 1 is privileged")
    assert await good.quiet() == [] and await bad.quiet() == []
    assert harness.sync(good)["lds"]["last_error"] is None
    assert harness.sync(good)["lds"]["acked"] == str(v2)
    assert harness.sync(bad)["lds"]["last_error"] == "port 1 is privileged"
    assert [n[0] for n in harness.registry.nacks] == ["gw-bad"]


async def test_stale_nonce_is_ignored(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    eds1 = await proxy.recv()
    harness.source.put(cla("a", "10.0.0.7"))
    harness.source.commit()
    eds2 = await proxy.recv()
    assert eds2.nonce != eds1.nonce
    # A request answering the first response (stale) asks for b: ignored, and counted.
    await proxy.request(ENDPOINT, ["a", "b"], nonce=eds1.nonce, version=eds1.version_info)
    assert await proxy.quiet() == []
    assert harness.registry.expired == [("gw-1", ENDPOINT)]
    # The same request on the current nonce is answered.
    await proxy.request(ENDPOINT, ["a", "b"], nonce=eds2.nonce, version=eds2.version_info)
    eds3 = await proxy.recv()
    assert names(eds3) == ["a", "b"]


async def test_streams_with_other_names_get_other_responses(harness):
    source = harness.source
    base_config(source).put(cla("a", "10.0.0.1"), cla("b", "10.0.0.2")).commit()
    one, other, same = harness.sotw("gw-1"), harness.sotw("gw-2"), harness.sotw("gw-3")
    await one.request(ENDPOINT, ["a"])
    await other.request(ENDPOINT, ["a", "b"])
    await same.request(ENDPOINT, ["a"])
    first, second, third = await one.recv(), await other.recv(), await same.recv()
    assert (names(first), names(second), first.nonce != second.nonce) == (["a"], ["a", "b"], True)
    assert third == first
    # A subscription change at the same version is a response of its own, with its own nonce.
    await one.request(ENDPOINT, ["a", "b"], nonce=first.nonce, version=first.version_info)
    grown = await one.recv()
    assert names(grown) == ["a", "b"] and grown.nonce not in (first.nonce, "")


async def test_stale_nack_is_recorded_and_not_answered(harness):
    proxy, v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    eds1 = await proxy.recv()
    harness.source.put(cla("a", "10.0.0.7"))
    harness.source.commit()
    await proxy.recv()
    await proxy.nack(eds1, "bad endpoint")
    assert await proxy.quiet() == []
    assert harness.sync(proxy)["eds"]["nacked"] == str(v)  # the version that nonce carried


async def test_legacy_wildcard(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER, [])  # never named anything: wildcard
    r = await proxy.recv()
    assert names(r) == ["a", "b"]
    assert harness.sync(proxy)["cds"]["legacy_wildcard"]
    await proxy.request(CLUSTER, ["*", "a"], nonce=r.nonce, version=r.version_info)  # still everything
    r = await proxy.recv()
    assert names(r) == ["a", "b"]
    await proxy.request(CLUSTER, ["a"], nonce=r.nonce, version=r.version_info)  # drops the wildcard
    r = await proxy.recv()
    assert names(r) == ["a"]
    await proxy.request(CLUSTER, [], nonce=r.nonce, version=r.version_info)  # now means nothing
    r = await proxy.recv()
    assert names(r) == []
    source.put(cluster("c"))
    source.commit()
    assert await proxy.quiet() == []  # c is not subscribed
    sync = harness.sync(proxy)["cds"]
    assert sync["subscribed"] == [] and not sync["legacy_wildcard"]


async def test_secrets_are_never_sent_by_wildcard(harness):
    # A proxy gets a Secret only by naming it (docs/design.md §10): neither an SDS request without
    # names (legacy wildcard) nor "*" returns any private key.
    source = harness.source
    base_config(source).put(secret("s2"), listener("l2", secrets=("s2",))).commit()
    proxy = harness.sotw()
    await proxy.request(SECRET)
    assert names(await proxy.recv()) == []  # the first request is answered, with nothing
    await proxy.request(SECRET, ["*"])
    assert [names(r) for r in await proxy.quiet()] in ([], [[]])
    await proxy.request(SECRET, ["*", "s2"])
    assert names(await proxy.recv()) == ["s2"]
    sync = harness.sync(proxy)["sds"]
    assert sync["subscribed"] == ["s2"] and not sync["legacy_wildcard"]


async def test_named_resource_is_sent_when_it_appears(harness):
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a", "c"])
    r = await proxy.recv()
    assert names(r) == ["a"]
    await proxy.ack(r, ["a", "c"])
    harness.source.put(cluster("c"), cla("c", "10.0.0.3"))
    v2 = harness.source.commit()
    r = await proxy.recv()
    # EDS carries only what changed; c was missing and now exists.
    assert (r.type_url, r.version_info, names(r)) == (ENDPOINT, str(v2), ["c"])


async def test_newly_subscribed_name_is_answered_even_unchanged(harness):
    proxy, v = start(harness)
    await proxy.request(ENDPOINT, ["a"])
    r = await proxy.recv()
    await proxy.ack(r, ["a"])
    await proxy.request(ENDPOINT, ["a", "b"], nonce=r.nonce, version=r.version_info)
    r2 = await proxy.recv()
    assert (r2.version_info, names(r2)) == (str(v), ["a", "b"])


async def test_unsubscribe(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(ENDPOINT, ["a", "b"])
    r = await proxy.recv()
    await proxy.request(ENDPOINT, ["a"], nonce=r.nonce, version=r.version_info)
    assert await proxy.quiet() == []  # a name set that only shrank needs no answer
    source.put(cla("b", "10.0.0.8"))
    source.commit()
    assert await proxy.quiet() == []  # b is no longer subscribed
    source.put(cla("a", "10.0.0.8"))
    v3 = source.commit()
    r = await proxy.recv()
    assert (r.version_info, names(r)) == (str(v3), ["a"])


async def test_full_state_types_answer_a_shrinking_subscription(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER, ["a", "b"])
    r = await proxy.recv()
    await proxy.request(CLUSTER, ["a"], nonce=r.nonce, version=r.version_info)
    r = await proxy.recv()  # absence means deletion in CDS: the proxy must be told
    assert (r.type_url, names(r)) == (CLUSTER, ["a"])


async def test_cds_and_lds_carry_the_full_set_other_types_only_changes(harness):
    source = harness.source
    proxy, _v = start(harness)
    source.put(listener("l2", port=9000), route("r2", "b"))
    source.commit()
    for type_url, subscribed in ((LISTENER, []), (ROUTE, ["r1", "r2"])):
        await proxy.request(type_url, subscribed)
        await proxy.ack(await proxy.recv(), subscribed)
    source.put(listener("l2", port=9001), route("r2", "a"))
    v = source.commit()
    lds, rds = await proxy.recv(), await proxy.recv()
    assert (lds.type_url, lds.version_info, names(lds)) == (LISTENER, str(v), ["l1", "l2"])
    assert (rds.type_url, rds.version_info, names(rds)) == (ROUTE, str(v), ["r2"])


async def test_removals(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    await proxy.request(ENDPOINT, ["a", "b"])
    await proxy.ack(await proxy.recv(), ["a", "b"])
    # An EDS removal alone needs no response: the cluster that referred to it goes away too.
    source.remove(ENDPOINT, "b")
    source.commit()
    assert await proxy.quiet() == []
    source.remove(CLUSTER, "b")
    v3 = source.commit()
    cds = await proxy.recv()
    assert (cds.type_url, cds.version_info, names(cds)) == (CLUSTER, str(v3), ["a"])


async def test_removing_every_cluster_sends_an_empty_cds(harness):
    # Deliberate deletion is not an accident: a complete version without clusters is sent as such.
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    source.remove(CLUSTER, "a").remove(CLUSTER, "b")
    v2 = source.commit()
    cds = await proxy.recv()
    assert (cds.version_info, names(cds)) == (str(v2), [])


async def test_push_order_cds_eds_lds_rds_sds(harness):
    proxy, _v = start(harness)
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
    harness.source.put(
        cluster("a", timeout_s=5),
        cla("a", "10.1.0.1"),
        listener("l1", port=9090, secrets=("s1",)),
        route("r1", "b"),
        secret("s1", "k2"),
    )
    v2 = harness.source.commit()
    got = [await proxy.recv() for _ in range(5)]
    assert [r.type_url for r in got] == [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET]
    assert {r.version_info for r in got} == {str(v2)}


async def test_a_stream_that_falls_behind_skips_to_the_newest_version(harness):
    source = harness.source
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    source.put(cluster("c"))
    source.commit()
    source.put(cluster("d"))
    v3 = source.commit()
    r = await proxy.recv()
    assert (r.version_info, names(r)) == (str(v3), ["a", "b", "c", "d"])
    assert await proxy.quiet() == []


async def test_eds_follows_every_cds_push(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    await proxy.request(ENDPOINT, ["a", "b"])
    eds = await proxy.recv()
    await proxy.ack(cds)
    await proxy.ack(eds, ["a", "b"])
    assert await proxy.quiet() == []
    # Only cluster a changes, not its endpoints: the CDS push is followed by a's endpoints so a can
    # warm (EDS in SotW may carry only some assignments; b's stays as it is).
    harness.source.put(cluster("a", timeout_s=7))
    v2 = harness.source.commit()
    cds2 = await proxy.recv()
    eds2 = await proxy.recv()
    assert (cds2.type_url, eds2.type_url) == (CLUSTER, ENDPOINT)
    assert eds2.version_info == str(v2) and names(eds2) == ["a"]
    await proxy.ack(cds2)
    await proxy.ack(eds2, ["a", "b"])
    assert await proxy.quiet() == []


async def test_eds_request_after_cds_is_answered(harness):
    # Envoy re-requests EDS after a CDS response with a request that looks like an ACK; it must be
    # answered or the clusters stay warming (go-control-plane #245).
    proxy, v = start(harness)
    await proxy.request(ENDPOINT, ["a", "b"])
    eds = await proxy.recv()
    await proxy.ack(eds, ["a", "b"])
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    await proxy.request(ENDPOINT, ["a", "b"], nonce=eds.nonce, version=eds.version_info)
    eds2 = await proxy.recv()
    assert (eds2.version_info, names(eds2)) == (str(v), ["a", "b"])
    await proxy.ack(eds2, ["a", "b"])
    assert await proxy.quiet() == []


async def per_type_streams(harness, first):
    """A proxy's CDS and EDS streams holding version 1, every response acknowledged; `first` started
    watching the source first (is woken first on a new version)."""
    base_config(harness.source).commit()
    cds_stream, eds_stream = harness.sotw(type_url=CLUSTER), harness.sotw(type_url=ENDPOINT)
    if first == CLUSTER:
        await cds_stream.request()
        await cds_stream.ack(await cds_stream.recv())
    await eds_stream.request(names=["a", "b"])
    eds = await eds_stream.recv()
    await eds_stream.ack(eds, ["a", "b"])
    if first == ENDPOINT:
        await cds_stream.request()
        await cds_stream.ack(await cds_stream.recv())
        # Clusters went out after the endpoints: the proxy asks for them again, and is answered.
        await eds_stream.request(names=["a", "b"], nonce=eds.nonce, version=eds.version_info)
        eds = await eds_stream.recv()
        await eds_stream.ack(eds, ["a", "b"])
    return cds_stream, eds_stream, eds


async def test_eds_request_after_cds_on_another_stream_is_answered(harness):
    # The EDS stream has looked at version 2 (nothing for it) when the CDS stream sends clusters; the
    # proxy's EDS request that follows looks like an ACK and must be answered all the same.
    cds_stream, eds_stream, eds = await per_type_streams(harness, first=ENDPOINT)
    harness.source.put(cluster("b", timeout_s=9))
    v2 = harness.source.commit()
    cds2 = await cds_stream.recv()
    assert cds2.version_info == str(v2)
    await eds_stream.request(names=["a", "b"], nonce=eds.nonce, version=eds.version_info)
    eds2 = await eds_stream.recv()
    assert (eds2.version_info, names(eds2)) == (str(v2), ["a", "b"])
    # Once answered, a plain ACK is not.
    await eds_stream.ack(eds2, ["a", "b"])
    await cds_stream.ack(cds2)
    await cds_stream.request(names=["a"], nonce=cds2.nonce, version=cds2.version_info)
    assert names(await cds_stream.recv()) == ["a"]  # CDS has lost names: answered (full state)
    assert harness.sync(eds_stream)["eds"]["acked"] == str(v2)
    assert harness.registry.expired == []


async def test_endpoints_follow_clusters_sent_on_another_stream(harness):
    # The CDS stream sends clusters first: the EDS stream then pushes the changed cluster's endpoints
    # with the same version, unasked.
    cds_stream, eds_stream, _eds = await per_type_streams(harness, first=CLUSTER)
    harness.source.put(cluster("b", timeout_s=9))
    v2 = harness.source.commit()
    assert (await cds_stream.recv()).version_info == str(v2)
    eds2 = await eds_stream.recv()
    assert (eds2.version_info, names(eds2)) == (str(v2), ["b"])


async def test_convergence_is_reported_once_every_pushed_type_is_acked(harness):
    proxy, _v = start(harness)
    for type_url in (CLUSTER, LISTENER):
        await proxy.request(type_url)
        await proxy.ack(await proxy.recv())
    assert await proxy.quiet() == []
    harness.source.put(cluster("a", timeout_s=4), listener("l1", port=4))
    harness.source.commit()
    cds, lds = await proxy.recv(), await proxy.recv()
    await proxy.ack(cds)
    assert await proxy.quiet() == []
    assert harness.registry.convergences == []
    await proxy.ack(lds)
    assert await proxy.quiet() == []
    assert [c[0] for c in harness.registry.convergences] == ["gw-1"]


async def test_responses_are_reported(harness):
    proxy, _v = start(harness)
    await proxy.request(CLUSTER)
    cds = await proxy.recv()
    assert harness.registry.responses == [("gw-1", CLUSTER, cds.ByteSize())]
