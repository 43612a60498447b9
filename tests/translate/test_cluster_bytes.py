"""cluster_bytes splices a cluster's name before a shared serialization of the rest: it must give exactly
the bytes of building and serializing the cluster, for every kind of port and options."""

from __future__ import annotations

import pytest

from xdsbus.model.services import Endpoint, Resolution, ServiceModel, ServicePort
from xdsbus.translate.envoy_clusters import build_cluster, cluster_bytes
from xdsbus.translate.global_options.model import UpstreamOptions

PORTS = [
    ServicePort(number=80, name="http", protocol="HTTP"),
    ServicePort(number=9090, name="grpc", protocol="GRPC"),
    ServicePort(number=8443, name="https", protocol="HTTPS"),
    ServicePort(number=50051, name="h2c", protocol="HTTP2"),
]
MODELS = [
    ServiceModel(hostname="web.default.svc.cluster.local", ports=tuple(PORTS)),
    ServiceModel(
        hostname="ext.default.svc.cluster.local",
        ports=tuple(PORTS),
        resolution=Resolution.STRICT_DNS,
        dns_name="api.example.com",
    ),
    ServiceModel(
        hostname="static.dc",
        ports=tuple(PORTS),
        resolution=Resolution.STATIC,
        endpoints=(Endpoint(address="10.0.0.1", port=80),),
        sni="static.dc",
    ),
]


@pytest.mark.parametrize("upstream", [None, UpstreamOptions(idle_timeout=0, connection_buffer_limits=1024)])
@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.resolution.value)
def test_cluster_bytes_are_the_built_clusters(model: ServiceModel, upstream: UpstreamOptions | None) -> None:
    for port in model.ports:
        built = build_cluster(model, port, upstream).SerializeToString(deterministic=True)
        assert cluster_bytes(model, port, upstream) == built, port
