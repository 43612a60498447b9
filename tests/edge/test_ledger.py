"""Following the ledger: readiness, complete versions only, scopes, identical versions on every edge."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc

from tests.edge.envoy_resources import base_config, cla, cluster, names, secret
from tests.edge.support import LedgerWriter, http_get, serving
from tests.support.objects import endpoint_slice, ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.contract.resources import Resource
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xdsbus.ledger.store import store_bodies
from xdsbus_builder.builder import Builder, BuilderConfig
from xdsbus_dev.harness.processes import eventually


async def test_streams_are_refused_until_a_first_version_is_loaded(ledger, make_edge, clients):
    edge = await make_edge()
    assert (await http_get(edge.http_port, "/ready"))[0] == 503
    early = clients("sotw", edge.xds_port)
    await early.request(CLUSTER)
    assert await early.status() == grpc.StatusCode.UNAVAILABLE
    assert (
        'xdsbus_edge_streams_refused{reason="not_ready"} 1' in (await http_get(edge.http_port, "/metrics"))[1]
    )
    v = await base_config(ledger).commit()
    await serving(edge, v)
    assert (await http_get(edge.http_port, "/ready"))[0] == 200
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(CLUSTER)
    assert (await proxy.recv()).version_info == str(v)


async def test_edge_starts_from_the_head_of_a_long_ledger(ledger, make_edge, clients):
    base_config(ledger)
    for i in range(5):
        ledger.put(cla("a", f"10.0.1.{i}"))
        await ledger.commit()
    ledger.remove(CLUSTER, "b")
    v = await ledger.commit()
    edge = await make_edge()
    await serving(edge, v)
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(CLUSTER)
    r = await proxy.recv()
    assert (r.version_info, names(r)) == (str(v), ["a"])


async def test_a_version_with_a_missing_body_is_not_served(bus, ledger, make_edge, clients):
    v1 = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v1)
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(ENDPOINT, ["a", "b"])
    await proxy.ack(await proxy.recv(), ["a", "b"])
    # Version 2 names a body that is not stored.
    ledger.put(cla("a", "10.9.9.9"), cla("b", "10.9.9.8"))
    missing = ledger.sha(ENDPOINT, "a")
    v2 = await ledger.commit(withhold=[missing])

    async def rejected():
        status = json.loads((await http_get(edge.debug_port, "/debug/scopez"))[1])["default"]
        return status if status["last_error_version"] == v2 else None

    status = await eventually(rejected, what="version 2 rejected")
    assert status["serving"] == v1 and status["ledger_head"] == v2
    assert missing in status["last_error"] and "not served" in status["last_error"]
    assert edge.cache.current("default").version == v1
    assert await proxy.quiet() == []  # no half-applied version reaches the proxy (b alone would be)
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert 'xdsbus_edge_versions_not_served{scope="default"} 1' in metrics
    assert 'xdsbus_edge_snapshot_version{scope="default"} ' + str(v1) in metrics
    configz = json.loads((await http_get(edge.debug_port, "/debug/configz"))[1])["default"]
    assert configz["version"] == str(v1) and missing in configz["status"]["last_error"]
    newcomer = clients("sotw", edge.xds_port, node_id="gw-2")
    await newcomer.request(ENDPOINT, ["a"])
    assert (await newcomer.recv()).version_info == str(v1)
    # The body shows up (a slow writer, a repaired store): the edge retries and serves version 2.
    body = ledger.table.get(ENDPOINT, "a")
    await store_bodies(bus, [Resource(body.sha256, body.body)])
    r = await proxy.recv(timeout=10)
    assert (r.version_info, names(r)) == (str(v2), ["a", "b"])
    status = json.loads((await http_get(edge.debug_port, "/debug/scopez"))[1])["default"]
    assert status["serving"] == v2 and status["last_error"] is None


async def test_corrupt_bodies_and_wrong_digests_are_not_served(bus, ledger, make_edge):
    v1 = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v1)
    follower = edge.cache.follower("default")
    ledger.put(cla("a", "10.9.9.7"))
    sha = ledger.sha(ENDPOINT, "a")
    await bus.resources.put(sha, b"not the body")
    v2 = await ledger.commit(withhold=[sha])

    async def rejected(version):
        return follower.last_error if follower.last_error_version == version else None

    assert "does not match its digest" in await eventually(lambda: rejected(v2), what="v2 rejected")
    ledger.put(cla("b", "10.9.9.6"))
    v3 = await ledger.commit(digest="0" * 64)
    assert "digest" in await eventually(lambda: rejected(v3), what="v3 rejected")
    assert edge.cache.current("default").version == v1


async def test_records_written_before_digests_named_their_algorithm_still_verify(bus, ledger, make_edge):
    """A record without `digest_algorithm` carries the `sha256-lines-v1` digest (docs/design.md §5): an
    edge verifies it with that algorithm, at start and when following, and then the new records too."""
    v1 = await base_config(ledger).commit(legacy_digest=True)
    edge = await make_edge()
    await serving(edge, v1)
    follower = edge.cache.follower("default")
    ledger.put(cla("a", "10.9.9.5"))
    v2 = await ledger.commit(legacy_digest=True)
    await serving(edge, v2)
    ledger.put(cla("b", "10.9.9.4"))
    v3 = await ledger.commit()
    await serving(edge, v3)
    assert follower.rejected_versions == 0
    # The field is honoured: a two-level digest in a record that names no algorithm does not verify.
    ledger.put(cla("a", "10.9.9.3"))
    v4 = await ledger.commit(digest=ledger.table.digest(), legacy_digest=True)

    async def rejected():
        return follower.last_error if follower.last_error_version == v4 else None

    assert "digest" in await eventually(rejected, what="v4 rejected")
    assert edge.cache.current("default").version == v3


async def test_term_records_are_skipped(ledger, make_edge, clients):
    """A builder's term record (docs/design.md §5, fencing) is no version: an edge following the ledger
    passes over it to the next version, and one starting behind term records finds the head version."""
    v1 = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v1)
    follower = edge.cache.follower("default")
    await ledger.publisher.publish_term(7, "builder-b")
    ledger.put(cla("a", "10.9.9.1"))
    v2 = await ledger.commit()
    await serving(edge, v2)
    # Two successors that published nothing yet.
    await ledger.publisher.publish_term(8, "builder-c")
    await ledger.publisher.publish_term(9, "builder-d")
    late = await make_edge()
    await serving(late, v2)
    assert follower.rejected_versions == 0 and follower.last_error is None
    assert late.cache.follower("default").rejected_versions == 0
    proxy = clients("sotw", late.xds_port)
    await proxy.request(ENDPOINT, ["a"])
    assert (await proxy.recv()).version_info == str(v2)


async def test_a_later_complete_version_replaces_an_incomplete_one(bus, ledger, make_edge, clients):
    v1 = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v1)
    ledger.put(cla("a", "10.9.9.9"))
    v2 = await ledger.commit(withhold=[ledger.sha(ENDPOINT, "a")])

    async def rejected():
        return edge.cache.follower("default").last_error_version == v2

    await eventually(rejected, what="version 2 rejected")
    ledger.put(cla("a", "10.9.9.10"))  # the next version no longer needs the missing body
    v3 = await ledger.commit()
    await serving(edge, v3)
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(ENDPOINT, ["a"])
    r = await proxy.recv()
    assert r.version_info == str(v3)


async def test_scopes_are_isolated(bus, ledger, make_edge, clients):
    v = await base_config(ledger).commit()
    other = LedgerWriter(bus, "other", first_version=500)
    other.put(cluster("o1"), cla("o1", "10.5.0.1"))
    vo = await other.commit()
    edge = await make_edge()  # follows "default" at start, "other" when a proxy asks for it
    await serving(edge, v)
    theirs = clients("sotw", edge.xds_port, node_id="gw-other", scope="other")
    await theirs.request(CLUSTER)
    r = await theirs.recv()
    assert (r.version_info, names(r)) == (str(vo), ["o1"])
    ours = clients("sotw", edge.xds_port)
    await ours.request(CLUSTER)
    r = await ours.recv()
    assert (r.version_info, names(r)) == (str(v), ["a", "b"])
    await ours.ack(r)
    await theirs.ack(theirs.last[CLUSTER])
    ledger.put(cluster("c"))
    v2 = await ledger.commit()
    assert names(await ours.recv()) == ["a", "b", "c"]
    await serving(edge, v2)
    assert await theirs.quiet() == []
    # A scope nobody publishes: refused once the edge has waited for it.
    nowhere = clients("sotw", edge.xds_port, node_id="gw-x", scope="nowhere")
    edge.cache.lazy_wait = 0.2
    await nowhere.request(CLUSTER)
    assert await nowhere.status() == grpc.StatusCode.UNAVAILABLE


def _without_nonce(response: Any) -> bytes:
    """A response's bytes without its nonce, which each edge draws for itself. (Removing the nonce's
    text from the bytes also removed every other occurrence of it: a nonce "3" took the 3s out of the
    rest of the response.)"""
    copy = type(response)()
    copy.CopyFrom(response)
    copy.ClearField("nonce")
    return copy.SerializeToString(deterministic=True)


async def test_every_edge_says_the_same_versions(ledger, make_edge, clients):
    v = await base_config(ledger).commit()
    edges = [await make_edge(), await make_edge()]
    for edge in edges:
        await serving(edge, v)
    proxies = [clients("sotw", e.xds_port) for e in edges]
    for p in proxies:
        await p.request(CLUSTER)
    first = [await p.recv() for p in proxies]
    assert first[0].version_info == first[1].version_info == str(v)
    assert first[0].resources == first[1].resources
    for p, r in zip(proxies, first, strict=True):
        await p.ack(r)
    ledger.put(cluster("c"))
    v2 = await ledger.commit()
    second = [await p.recv() for p in proxies]
    assert second[0].version_info == second[1].version_info == str(v2)
    assert _without_nonce(second[0]) == _without_nonce(second[1])
    deltas = [clients("delta", e.xds_port, node_id="gw-d") for e in edges]
    for d in deltas:
        await d.request(CLUSTER)
    got = [await d.recv() for d in deltas]
    assert next({r.name: r.version for r in g.resources} for g in got) == {
        r.name: r.version for r in got[1].resources
    }


async def test_configz_redacts_private_keys(ledger, make_edge):
    v = await base_config(ledger).put(secret("s1", "-----BEGIN PRIVATE KEY-----topsecret")).commit()
    edge = await make_edge()
    await serving(edge, v)
    status, body = await http_get(edge.debug_port, "/debug/configz")
    assert status == 200
    assert "topsecret" not in body
    config = json.loads(body)["default"]
    assert config["version"] == str(v)
    assert [c["name"] for c in config["resources"]["cds"]] == ["a", "b"]
    assert config["resources"]["sds"][0]["tls_certificate"]["private_key"]["inline_string"] == "[redacted]"


async def test_edge_serves_what_the_builder_publishes(bus, make_edge, clients):
    src = ScriptedSource(bus)
    await src.put(service("web"))
    await src.put(endpoint_slice("web", ["10.0.0.1"]))
    await src.put(ingress("web", "web.example.com", "web"))
    stop = asyncio.Event()
    builder = Builder(bus, BuilderConfig(instance_id="edge-test", debounce_quiet=0.05))
    task = asyncio.create_task(builder.run(stop))
    try:
        edge = await make_edge()

        async def loaded():
            return edge.cache.current("default")

        snap = await eventually(loaded, what="a first version")
        proxy = clients("sotw", edge.xds_port)
        await proxy.request(CLUSTER)
        cds = await proxy.recv()
        assert cds.version_info == snap.version_info
        clusters = names(cds)
        assert any("web" in c for c in clusters)
        await proxy.request(ENDPOINT, clusters)
        assert names(await proxy.recv()) == [c for c in clusters if c in snap.of(ENDPOINT)]
        await proxy.request(LISTENER)
        assert names(await proxy.recv())
        await proxy.request(ROUTE, sorted(snap.of(ROUTE)))
        assert names(await proxy.recv()) == sorted(snap.of(ROUTE))
    finally:
        stop.set()
        await task


async def test_edge_keeps_serving_through_a_nats_restart_and_follows_on(
    nats_server, bus, ledger, make_edge, clients
):
    v = await base_config(ledger).commit()
    edge = await make_edge()
    await serving(edge, v)
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(CLUSTER)
    await proxy.ack(await proxy.recv())
    nats_server.stop()
    newcomer = clients("sotw", edge.xds_port, node_id="gw-2")
    await newcomer.request(CLUSTER)  # served from memory while NATS is away
    assert (await newcomer.recv()).version_info == str(v)
    nats_server.start()

    async def reconnected():
        try:
            return bus.nc.is_connected and await asyncio.wait_for(bus.js.account_info(), 1)
        except Exception:
            return None

    await eventually(reconnected, timeout=20, interval=0.2, what="the test's NATS connection back")
    ledger.put(cluster("c"))
    v2 = await asyncio.wait_for(ledger.commit(), 10)
    r = await proxy.recv(timeout=20)
    assert (r.version_info, names(r)) == (str(v2), ["a", "b", "c"])
