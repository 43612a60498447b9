"""Envoy config JSON for a set of resources: what `xdsbus replay --dump` and `xdsbus dump` write."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401 - registers the type for Any
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401 - registers the type
    http_connection_manager_pb2,
)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, json_format
from google.protobuf.message import Message

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET, TYPE_ORDER

FILE_NAMES = {
    CLUSTER: "clusters.json",
    ENDPOINT: "endpoints.json",
    LISTENER: "listeners.json",
    ROUTE: "routes.json",
    SECRET: "secrets.json",
}

_CLASSES: dict[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    ROUTE: route_pb2.RouteConfiguration,
    SECRET: secret_pb2.Secret,
}


def to_json(any_bytes: bytes) -> dict[str, object]:
    """One serialized Any as Envoy's JSON, with private key material redacted."""
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(any_bytes)
    message = _CLASSES[wrapper.type_url]()
    wrapper.Unpack(message)
    if isinstance(message, secret_pb2.Secret) and message.HasField("tls_certificate"):
        cert = message.tls_certificate
        for field in ("private_key", "password"):
            if cert.HasField(field):
                getattr(cert, field).inline_string = "[redacted]"
    out = json_format.MessageToDict(message, preserving_proto_field_name=True)
    out["@type"] = wrapper.type_url
    return out


def write_dump(directory: Path, resources: Iterable[tuple[str, bytes]]) -> list[Path]:
    """Write one file per resource type: `{"resources": [...]}` like an xDS response, sorted by name."""
    by_type: dict[str, list[dict[str, object]]] = {t: [] for t in TYPE_ORDER}
    for type_url, body in resources:
        by_type[type_url].append(to_json(body))
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for type_url in TYPE_ORDER:
        path = directory / FILE_NAMES[type_url]
        path.write_text(json.dumps({"resources": by_type[type_url]}, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
