"""Envoy xDS type URLs and the order a proxy must receive them in."""

from __future__ import annotations

CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
# Scoped RDS: which RouteConfiguration of a split HTTP route table a request uses (docs/route-table-split.md).
SCOPED_ROUTE = "type.googleapis.com/envoy.config.route.v3.ScopedRouteConfiguration"
SECRET = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
# ECDS: the wasm filters' configurations (one per WasmPlugin instance), which listeners name.
EXTENSION_CONFIG = "type.googleapis.com/envoy.config.core.v3.TypedExtensionConfig"

# The order a proxy must receive types in (docs/xds-protocol.md §1.9): clusters before their endpoints,
# listeners before the filter configurations (ECDS), scopes and routes they name, secrets last.
TYPE_ORDER = (CLUSTER, ENDPOINT, LISTENER, EXTENSION_CONFIG, SCOPED_ROUTE, ROUTE, SECRET)
