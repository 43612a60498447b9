"""Spliced responses are byte-for-byte what protobuf writes for the same message."""

from __future__ import annotations

import hashlib

from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import any_pb2

from tests.edge.envoy_resources import cla, cluster, listener
from xdsbus.contract.resources import pack_any
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER
from xdsbus_edge.encoding import delta_response, sotw_response
from xdsbus_edge.snapshot import CachedResource, Snapshot, entry


def cached(type_url, message, name):
    body = pack_any(type_url, message.SerializeToString(deterministic=True))
    return CachedResource(type_url, name, hashlib.sha256(body).hexdigest(), body)


# Big enough that lengths take multi-byte varints.
CLUSTERS = [
    cached(CLUSTER, cluster(f"outbound|80||svc-{i}.example"), f"outbound|80||svc-{i}.example")
    for i in range(300)
]
ENDPOINTS = [cached(ENDPOINT, cla("a", *(f"10.0.{i // 250}.{i % 250}" for i in range(400))), "a")]


def test_sotw_response_matches_protobuf():
    body = sotw_response("12345", CLUSTER, "77", [p for r in CLUSTERS for p in entry(r)])
    expected = discovery_pb2.DiscoveryResponse(version_info="12345", type_url=CLUSTER, nonce="77")
    for r in CLUSTERS:
        any_ = any_pb2.Any()
        any_.ParseFromString(r.body)
        expected.resources.append(any_)
    assert body == expected.SerializeToString(deterministic=True)


def test_shared_response_is_built_once():
    snap = Snapshot(scope="s", version=9, digest="", resources={CLUSTER: {r.name: r for r in CLUSTERS}})
    pieces = [p for r in sorted(CLUSTERS, key=lambda r: r.name) for p in entry(r)]
    nonce, body = snap.responses.get(CLUSTER, "*", lambda: iter(pieces))
    assert body == sotw_response("9", CLUSTER, nonce, pieces)
    assert snap.responses.get(CLUSTER, "*", lambda: iter(()))[1] is body  # kept, not built again
    assert snap.responses.get(CLUSTER, ("a",), lambda: iter(pieces))[0] != nonce  # another response


def test_delta_response_matches_protobuf():
    resources = CLUSTERS[:5] + ENDPOINTS
    pieces = []
    for r in resources:
        pieces += r.delta_entry()
    body = delta_response("42", CLUSTER, "n-1", pieces, ["gone-1", "gone-2"])
    expected = discovery_pb2.DeltaDiscoveryResponse(
        system_version_info="42", type_url=CLUSTER, nonce="n-1", removed_resources=["gone-1", "gone-2"]
    )
    for r in resources:
        entry = expected.resources.add(name=r.name, version=r.sha256)
        entry.resource.ParseFromString(r.body)
    assert body == expected.SerializeToString(deterministic=True)


def test_cached_resource_knows_the_endpoints_a_cluster_needs():
    assert CLUSTERS[0].eds_name == "outbound|80||svc-0.example"
    named = cluster("x")
    named.eds_cluster_config.service_name = "x-endpoints"
    assert cached(CLUSTER, named, "x").eds_name == "x-endpoints"
    assert cached(LISTENER, listener("l"), "l").eds_name is None


def test_a_resource_is_its_body_with_the_digest_hashed_or_given():
    """Whether the digest is handed over (a large body keeps it) or hashed again when asked for, it is
    the body's sha256; the type's attributes come with the resource's class."""
    cluster_body = CLUSTERS[0].body
    derived = CachedResource(CLUSTER, "outbound|80||svc-0.example", None, cluster_body)
    assert derived.digest == CLUSTERS[0].digest == hashlib.sha256(cluster_body).digest()
    assert derived.type_url == CLUSTER and derived.eds_name == CLUSTERS[0].eds_name
    (assignment,) = ENDPOINTS
    assert len(assignment.body) > 1024 and assignment.sha256 == hashlib.sha256(assignment.body).hexdigest()
    assert assignment.type_url == ENDPOINT and assignment.eds_name is None and not assignment.secrets
    framed = any_pb2.Any()
    framed.ParseFromString(assignment.body)
    wrapper = discovery_pb2.DiscoveryResponse(resources=[framed]).SerializeToString(deterministic=True)
    assert b"".join(entry(assignment)) == wrapper
