"""SDS serves only the Secrets the scope's listeners and clusters name (docs/design.md §7, §10), over
SotW and delta, as references come and go; and the reference counts a snapshot carries over."""

from __future__ import annotations

import hashlib

from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2

from tests.edge.envoy_resources import base_config, cluster, listener, names, secret
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import CLUSTER, LISTENER, SECRET
from xdsbus_edge.snapshot import CachedResource, next_snapshot


def tls_cluster(name: str, client_secret: str, ca_secret: str) -> object:
    """A cluster whose upstream TLS names a client certificate and a CA (combined validation)."""
    c = cluster(name)
    tls = tls_pb2.UpstreamTlsContext()
    common = tls.common_tls_context
    common.tls_certificate_sds_secret_configs.add(name=client_secret)
    common.combined_validation_context.validation_context_sds_secret_config.name = ca_secret
    c.transport_socket.name = "envoy.transport_sockets.tls"
    c.transport_socket.typed_config.Pack(tls)
    return c


async def test_sotw_sends_only_named_secrets_as_references_come_and_go(harness):
    source = harness.source
    base_config(source).put(secret("orphan"), secret("client"), secret("ca")).commit()
    proxy = harness.sotw()
    await proxy.request(SECRET, ["s1", "orphan", "client", "ca"])
    first = await proxy.recv()
    assert names(first) == ["s1"]  # orphan, client and ca: no listener or cluster names them
    await proxy.ack(first, ["s1", "orphan", "client", "ca"])
    # A cluster starts naming two of them: they are pushed, the orphan still is not.
    source.put(tls_cluster("up", "client", "ca"))
    v2 = source.commit()
    pushed = await proxy.recv()
    assert (pushed.version_info, names(pushed)) == (str(v2), ["ca", "client"])
    await proxy.ack(pushed, ["s1", "orphan", "client", "ca"])
    # A changed orphan is still not sent.
    source.put(secret("orphan", "-----BEGIN PRIVATE KEY-----new")).commit()
    assert [names(r) for r in await proxy.quiet()] == []


async def test_delta_reports_unnamed_secrets_removed_and_sends_them_once_named(harness):
    source = harness.source
    base_config(source).put(secret("orphan")).commit()
    proxy = harness.delta()
    await proxy.request(SECRET, ["s1", "orphan"])
    first = await proxy.recv()
    assert (names(first), list(first.removed_resources)) == (["s1"], ["orphan"])
    await proxy.ack(first)
    source.put(listener("l2", 8081, secrets=("orphan",)))
    source.commit()
    named = await proxy.recv()
    assert names(named) == ["orphan"]
    await proxy.ack(named)
    # The only listener naming it goes: the proxy is told the Secret is gone.
    source.remove(LISTENER, "l2").commit()
    gone = await proxy.recv()
    assert (names(gone), list(gone.removed_resources)) == ([], ["orphan"])


def _res(message: object, type_url: str) -> CachedResource:
    wrapper = any_pb2.Any()
    wrapper.Pack(message)  # type: ignore[arg-type]
    body = wrapper.SerializeToString()
    name = message.name  # type: ignore[attr-defined]
    return CachedResource(type_url, name, hashlib.sha256(body).hexdigest(), body)


def test_reference_counts_follow_listeners_and_clusters() -> None:
    s1 = _res(secret("s1"), SECRET)
    l1, l2 = (
        _res(listener("l1", secrets=("s1",)), LISTENER),
        _res(listener("l2", 81, secrets=("s1",)), LISTENER),
    )
    c1 = _res(tls_cluster("c1", "s1", "ca"), CLUSTER)
    assert c1.secrets == {"s1", "ca"}
    key = lambda r, t: ResourceKey(t, r.name)  # noqa: E731
    snap = next_snapshot(
        None,
        scope="s",
        version=1,
        digest="",
        changes={key(s1, SECRET): s1, key(l1, LISTENER): l1, key(l2, LISTENER): l2, key(c1, CLUSTER): c1},
    )
    assert dict(snap.secret_refs) == {"s1": 3, "ca": 1}
    assert list(snap.servable(SECRET)) == ["s1"]
    # Only endpoints change: the counts and the servable Secrets are the predecessor's, not rebuilt.
    snap2 = next_snapshot(snap, scope="s", version=2, digest="", changes={})
    assert snap2.secret_refs is snap.secret_refs and snap2.servable(SECRET) is snap.servable(SECRET)
    snap3 = next_snapshot(
        snap2, scope="s", version=3, digest="", changes={key(l1, LISTENER): None, key(c1, CLUSTER): None}
    )
    assert dict(snap3.secret_refs) == {"s1": 1}
    assert snap3.changed[SECRET] == {"ca"}
    snap4 = next_snapshot(snap3, scope="s", version=4, digest="", changes={key(l2, LISTENER): None})
    assert dict(snap4.secret_refs) == {} and dict(snap4.servable(SECRET)) == {}
    assert snap4.changed[SECRET] == {"s1"}
