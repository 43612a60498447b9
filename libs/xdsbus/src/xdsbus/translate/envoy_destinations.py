"""The clusters route destinations need beyond each service port's own cluster.

A destination with a non-default `UpstreamPolicy` gets a policy cluster: a copy of the service port's
cluster with its load balancer, protocol and upstream TLS, named after a hash of the policy so that
destinations with equal policies share it and different policies never overwrite each other. EDS policy
clusters read the service cluster's endpoints (same EDS service name), so they need no endpoints of their
own. A destination with a fallback gets an aggregate cluster over its primary and fallback clusters.

Cluster names depend on the destination alone, so routes can be generated without looking at services;
the clusters themselves need the services (`derived_clusters`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable

import msgspec
from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.clusters.aggregate.v3 import cluster_pb2 as aggregate_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from xdsbus.model.routes import (
    Destination,
    LbAlgorithm,
    Route,
    UpstreamPolicy,
    UpstreamProtocol,
    UpstreamTls,
    UpstreamTlsMode,
)
from xdsbus.model.services import ServiceModel, cluster_name, subset_cluster_name
from xdsbus.translate import envoy_clusters
from xdsbus.translate.envoy_common import pack, sds_secret, tls_transport_socket
from xdsbus.translate.global_options.envoy_upstream import set_upstream_options
from xdsbus.translate.global_options.model import DEFAULT_OPTIONS, UpstreamOptions
from xdsbus.translate.http2rpc import dubbo_upstream_config

_AGGREGATE = "envoy.clusters.aggregate"
# The system trust bundle of Debian/Ubuntu-based Envoy images (Istio uses the same path). Envoy's own
# `system_root_certs` cannot be combined with the subject name check ("SAN-based verification without
# trusted CA is insecure"), so the bundle is named as a file.
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

_LB_POLICY = {
    LbAlgorithm.ROUND_ROBIN: cluster_pb2.Cluster.ROUND_ROBIN,
    LbAlgorithm.LEAST_REQUEST: cluster_pb2.Cluster.LEAST_REQUEST,
    LbAlgorithm.RANDOM: cluster_pb2.Cluster.RANDOM,
    LbAlgorithm.RING_HASH: cluster_pb2.Cluster.RING_HASH,
    LbAlgorithm.MAGLEV: cluster_pb2.Cluster.MAGLEV,
}


def _short_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:10]


# Routes name the cluster of each destination and derived_clusters names it again; the policies in use
# are few (one per annotation combination), so their hashes are kept.
@functools.lru_cache(maxsize=1024)
def policy_subset(policy: UpstreamPolicy) -> str:
    """The subset part of a policy cluster's name: `p-` and 10 hex digits of the policy's hash."""
    return "p-" + _short_hash(msgspec.msgpack.encode(policy))


def _primary_cluster(dest: Destination) -> str:
    """The cluster of `dest` itself, ignoring its fallback."""
    if dest.policy.is_default():
        return cluster_name(dest.port, dest.hostname)
    return subset_cluster_name(dest.port, policy_subset(dest.policy), dest.hostname)


def fallback_chain(dest: Destination) -> list[Destination]:
    """`dest`, then its fallback, then the fallback's fallback, ..."""
    chain = [dest]
    while chain[-1].fallback is not None:
        chain.append(chain[-1].fallback)
    return chain


def _chain_clusters(chain: list[Destination]) -> list[str]:
    # Aggregate clusters cannot contain aggregate clusters, so a chain of fallbacks is flattened into one
    # priority list; a cluster repeated later in the chain adds nothing.
    return list(dict.fromkeys(_primary_cluster(d) for d in chain))


def _aggregate_name(dest: Destination, members: list[str]) -> str:
    return subset_cluster_name(dest.port, "fb-" + _short_hash("\n".join(members).encode()), dest.hostname)


def destination_cluster(dest: Destination) -> str:
    """The cluster a route sends `dest`'s traffic to.

    The service port's cluster (`outbound|port||host`) for a default policy, a policy cluster
    (`outbound|port|p-<hash>|host`) otherwise, and with a fallback an aggregate cluster
    (`outbound|port|fb-<hash>|host`) over the primary and fallback clusters.
    """
    clusters = _chain_clusters(fallback_chain(dest))
    return clusters[0] if len(clusters) == 1 else _aggregate_name(dest, clusters)


def route_destinations(route: Route) -> list[Destination]:
    """Every destination a route sends traffic to: its backends, its mirrors and its error page backend.

    Fallbacks are not listed separately: `derived_clusters` covers a destination's fallback chain.
    """
    out = list(route.destinations)
    out.extend(mirror.destination for mirror in route.mirrors)
    if route.error_pages is not None:
        out.append(route.error_pages.destination)
    return out


def derived_clusters(
    dest: Destination,
    lookup: Callable[[str], ServiceModel | None],
    upstream: UpstreamOptions = DEFAULT_OPTIONS.upstream,
) -> list[tuple[str, cluster_pb2.Cluster]]:
    """The clusters `dest` needs besides the service ports' own ones, in a fixed order, with the
    upstream connection options (higress-config `upstream`).

    `lookup` finds a service by hostname. A policy cluster whose service or port is unknown is left out:
    the route then points at a missing cluster and Envoy answers 503, as for a missing service cluster.
    An aggregate cluster is always built; Envoy skips members that do not exist.
    """
    out: list[tuple[str, cluster_pb2.Cluster]] = []
    seen: set[str] = set()
    chain = fallback_chain(dest)
    for member in chain:
        name = _primary_cluster(member)
        if member.policy.is_default() or name in seen:
            continue
        seen.add(name)
        cluster = _policy_cluster(member, name, lookup(member.hostname), upstream)
        if cluster is not None:
            out.append((name, cluster))
    members = _chain_clusters(chain)
    if len(members) > 1:
        aggregate = _aggregate_name(dest, members)
        out.append((aggregate, _aggregate_cluster(aggregate, members)))
    return out


def _policy_cluster(
    dest: Destination, name: str, service: ServiceModel | None, upstream: UpstreamOptions
) -> cluster_pb2.Cluster | None:
    port = next((p for p in service.ports if p.number == dest.port), None) if service else None
    if service is None or port is None:
        return None
    cluster = envoy_clusters.build_cluster(service, port, upstream)
    if cluster.type == cluster_pb2.Cluster.EDS:
        # Share the service cluster's ClusterLoadAssignment instead of publishing a copy.
        cluster.eds_cluster_config.service_name = cluster.name
    else:
        cluster.load_assignment.cluster_name = name
    cluster.name = name
    policy = dest.policy
    cluster.lb_policy = _LB_POLICY[policy.lb]
    http2 = envoy_clusters.port_speaks_http2(port)
    if policy.protocol is not UpstreamProtocol.DEFAULT:
        http2 = policy.protocol is UpstreamProtocol.HTTP2
        cluster.typed_extension_protocol_options.clear()
        if http2:
            envoy_clusters.set_http2(cluster, upstream)
        elif policy.protocol is UpstreamProtocol.HTTP1:
            set_upstream_options(cluster, upstream, http2=False)
        elif policy.protocol is UpstreamProtocol.DUBBO:
            cluster.upstream_config.CopyFrom(dubbo_upstream_config())
    if policy.tls is not None:
        cluster.transport_socket.CopyFrom(tls_transport_socket(upstream_tls_context(policy.tls, http2=http2)))
    return cluster


def upstream_tls_context(tls: UpstreamTls, *, http2: bool) -> tls_pb2.UpstreamTlsContext:
    """TLS from Envoy to a backend: SNI, the client certificate for mutual TLS and, when verifying, the
    CA (from SDS, or the system bundle without `ca_secret`) and the names the server must carry."""
    common = tls_pb2.CommonTlsContext()
    if http2:
        common.alpn_protocols.append("h2")
    if tls.mode is UpstreamTlsMode.MUTUAL and tls.client_secret:
        common.tls_certificate_sds_secret_configs.append(sds_secret(tls.client_secret))
    if tls.verify:
        names = tls.subject_alt_names or ((tls.sni,) if tls.sni else ())
        default = common_pb2.CertificateValidationContext(
            match_typed_subject_alt_names=[
                common_pb2.SubjectAltNameMatcher(
                    san_type=common_pb2.SubjectAltNameMatcher.DNS,
                    matcher=string_pb2.StringMatcher(exact=name),
                )
                for name in names
            ]
        )
        if tls.ca_secret:
            combined = common.combined_validation_context
            combined.default_validation_context.CopyFrom(default)
            combined.validation_context_sds_secret_config.CopyFrom(sds_secret(tls.ca_secret))
        else:
            default.trusted_ca.filename = SYSTEM_CA_BUNDLE
            common.validation_context.CopyFrom(default)
    return tls_pb2.UpstreamTlsContext(common_tls_context=common, sni=tls.sni)


def _aggregate_cluster(name: str, members: list[str]) -> cluster_pb2.Cluster:
    return cluster_pb2.Cluster(
        name=name,
        connect_timeout=envoy_clusters.CONNECT_TIMEOUT,
        lb_policy=cluster_pb2.Cluster.CLUSTER_PROVIDED,
        cluster_type=cluster_pb2.Cluster.CustomClusterType(
            name=_AGGREGATE, typed_config=pack(aggregate_pb2.ClusterConfig(clusters=members))
        ),
    )
