"""Opening and refusing streams (docs/xds-protocol.md §1.1, §1.2, §6), scopes, and what a stream
tells its registry and source, on in-memory streams."""

from __future__ import annotations

import grpc

from tests.edge.envoy_resources import base_config, cluster, names
from tests.edge.harness import Harness
from xdsbus.contract.type_urls import CLUSTER, LISTENER


async def test_streams_are_refused_until_a_complete_snapshot_is_loaded(harness):
    for early in (harness.sotw("gw-early"), harness.delta("gw-early-delta")):
        await early.request(CLUSTER)
        assert await early.status() == grpc.StatusCode.UNAVAILABLE
    # Refused before anything was written: no empty CDS or LDS reached the proxies.
    assert harness.registry.responses == []
    assert harness.registry.refusals == [("gw-early", "not_ready"), ("gw-early-delta", "not_ready")]
    assert harness.registry.streams == []
    v = base_config(harness.source).commit()
    proxy = harness.sotw()
    await proxy.request(CLUSTER)
    r = await proxy.recv()
    assert (r.version_info, names(r)) == (str(v), ["a", "b"])


async def test_ads_requires_a_type_url(harness):
    base_config(harness.source).commit()
    for proxy in (harness.sotw(), harness.delta()):
        await proxy.request("")
        assert await proxy.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert [r for _, r in harness.registry.refusals] == ["no_type", "no_type"]


async def test_a_node_id_is_required(harness):
    base_config(harness.source).commit()
    anonymous = harness.sotw(node_id="")
    await anonymous.request(CLUSTER)
    assert await anonymous.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.registry.refusals == [("", "no_node")]


async def test_an_invalid_scope_is_refused(harness):
    base_config(harness.source).commit()
    proxy = harness.sotw(scope="not a subject token")
    await proxy.request(CLUSTER)
    assert await proxy.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert harness.registry.refusals == [("gw-1", "bad_scope")]


async def test_per_type_stream_rejects_a_foreign_type(harness):
    base_config(harness.source).commit()
    for stream in (harness.sotw(type_url=CLUSTER), harness.delta(type_url=CLUSTER)):
        await stream.request(LISTENER)
        assert await stream.status() == grpc.StatusCode.INVALID_ARGUMENT
    assert [r for _, r in harness.registry.refusals] == ["wrong_type", "wrong_type"]


async def test_only_the_first_request_carries_the_node(harness):
    base_config(harness.source).commit()
    proxy = harness.sotw(node_id="gw-7")
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())  # no node on this one (proxies.py sends it once)
    assert await proxy.quiet() == []
    assert [s.node_id for s in harness.registry.streams] == ["gw-7"]


async def test_scopes_are_isolated(harness):
    source = harness.source
    v = base_config(source).commit()
    source.put(cluster("o1"), scope="other")
    vo = source.commit("other")
    theirs = harness.sotw("gw-other", scope="other")
    await theirs.request(CLUSTER)
    r = await theirs.recv()
    assert (r.version_info, names(r)) == (str(vo), ["o1"])
    ours = harness.sotw()
    await ours.request(CLUSTER)
    r = await ours.recv()
    assert (r.version_info, names(r)) == (str(v), ["a", "b"])
    await ours.ack(r)
    await theirs.ack(theirs.last[CLUSTER])
    source.put(cluster("c"))
    source.commit()
    assert names(await ours.recv()) == ["a", "b", "c"]
    assert await theirs.quiet() == []


async def test_a_stream_registers_while_open_and_watches_its_scope(harness):
    base_config(harness.source).commit()
    proxy = harness.delta(node_id="gw-9")
    await proxy.request(CLUSTER)
    await proxy.recv()
    assert [s.node_id for s in harness.registry.streams_of("gw-9")] == ["gw-9"]
    assert harness.source.watchers() == 1
    await proxy.close()
    assert harness.registry.streams == [] and harness.source.watchers() == 0


async def test_every_source_with_the_same_ledger_says_the_same_bytes(harness):
    # Versions are the ledger's, and responses are spliced from the same bytes: two edges (two sources
    # fed the same versions) answer alike, byte for byte, but for the nonce (each edge numbers its own
    # responses, shared_responses.py; a nonce never outlives its stream).
    other = Harness()
    try:
        got = []
        for h in (harness, other):
            base_config(h.source).commit()
            proxy = h.sotw()
            await proxy.request(CLUSTER)
            got.append(await proxy.recv())
        for response in got:
            response.nonce = ""
        assert got[0].SerializeToString() == got[1].SerializeToString()
    finally:
        await other.close()
