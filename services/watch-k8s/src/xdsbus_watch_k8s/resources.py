"""The table of what the Kubernetes source watches: each kind's API coordinates and, per kind, the feeds
(one list+watch each) with their namespace, field selector and object filter.

Most kinds have one feed. A kind can have several when one watch cannot select exactly what is wanted:
ConfigMaps `higress-config` and `higress-https` (a field selector cannot say "either name"), and Secrets
when the watched namespace is not the system namespace (filtered Secrets there, every Secret in the
system namespace). The publisher merges a kind's feeds into one set of keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

# Higress' defaults (pkg/cmd/server.go, helm values).
DEFAULT_SYSTEM_NAMESPACE = "higress-system"
HIGRESS_CONFIG_MAPS = ("higress-config", "higress-https")
MCP_BRIDGE_NAME = "default"
TLS_SECRET_TYPE = "kubernetes.io/tls"
CA_CERT_KEY = "ca.crt"

Accept = Callable[[Mapping[str, Any]], bool]


@dataclasses.dataclass(frozen=True, slots=True)
class Resource:
    """A kind's API coordinates. `versions` are tried in order (the first served one is used);
    `optional` kinds are CRDs that may not be installed: waited for, never fatal."""

    kind: str
    group: str  # "" for the core API
    versions: tuple[str, ...]
    plural: str
    namespaced: bool = True
    optional: bool = False

    def api_version(self, version: str) -> str:
        """`v1` for the core group, `<group>/<version>` otherwise."""
        return f"{self.group}/{version}" if self.group else version

    def collection_path(self, version: str, namespace: str | None) -> str:
        """The list/watch path, across all namespaces when `namespace` is None."""
        base = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        if namespace is not None and self.namespaced:
            return f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{base}/{self.plural}"

    def key(self, namespace: str | None, name: str) -> str:
        """The event key: `namespace/name`, or the bare name for cluster-scoped kinds (as watch-file)."""
        return f"{namespace}/{name}" if self.namespaced else name


def _accept_all(_obj: Mapping[str, Any]) -> bool:
    return True


@dataclasses.dataclass(frozen=True, slots=True)
class Feed:
    """One list+watch of a resource. `namespace` None means all namespaces (or a cluster-scoped kind).
    `accept` drops objects the watch returns but the source does not publish; an object that stops being
    accepted is published as deleted."""

    resource: Resource
    namespace: str | None = None
    field_selector: str = ""
    accept: Accept = _accept_all

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        """For logs: `Secret in higress-system`, `IngressClass`, `Ingress in all namespaces`."""
        where = ""
        if self.resource.namespaced:
            where = f" in {self.namespace}" if self.namespace is not None else " in all namespaces"
        selector = f" ({self.field_selector})" if self.field_selector else ""
        return f"{self.kind}{where}{selector}"


SERVICE = Resource("Service", "", ("v1",), "services")
ENDPOINT_SLICE = Resource("EndpointSlice", "discovery.k8s.io", ("v1",), "endpointslices")
INGRESS = Resource("Ingress", "networking.k8s.io", ("v1",), "ingresses")
INGRESS_CLASS = Resource("IngressClass", "networking.k8s.io", ("v1",), "ingressclasses", namespaced=False)
SECRET = Resource("Secret", "", ("v1",), "secrets")
# Gateway API listeners select the namespaces routes may come from by their labels.
NAMESPACE = Resource("Namespace", "", ("v1",), "namespaces", namespaced=False)
CONFIG_MAP = Resource("ConfigMap", "", ("v1",), "configmaps")
MCP_BRIDGE = Resource("McpBridge", "networking.higress.io", ("v1",), "mcpbridges", optional=True)
WASM_PLUGIN = Resource("WasmPlugin", "extensions.higress.io", ("v1alpha1",), "wasmplugins", optional=True)
HTTP2RPC = Resource("Http2Rpc", "networking.higress.io", ("v1",), "http2rpcs", optional=True)
_GATEWAY_API = "gateway.networking.k8s.io"
GATEWAY_CLASS = Resource(
    "GatewayClass", _GATEWAY_API, ("v1",), "gatewayclasses", namespaced=False, optional=True
)
GATEWAY = Resource("Gateway", _GATEWAY_API, ("v1",), "gateways", optional=True)
HTTP_ROUTE = Resource("HTTPRoute", _GATEWAY_API, ("v1",), "httproutes", optional=True)
GRPC_ROUTE = Resource("GRPCRoute", _GATEWAY_API, ("v1",), "grpcroutes", optional=True)
# ReferenceGrant reached v1 in Gateway API 1.3; older installations serve only v1beta1.
REFERENCE_GRANT = Resource(
    "ReferenceGrant", _GATEWAY_API, ("v1", "v1beta1"), "referencegrants", optional=True
)

RESOURCES: tuple[Resource, ...] = (
    SERVICE,
    ENDPOINT_SLICE,
    INGRESS,
    INGRESS_CLASS,
    SECRET,
    NAMESPACE,
    CONFIG_MAP,
    MCP_BRIDGE,
    WASM_PLUGIN,
    HTTP2RPC,
    GATEWAY_CLASS,
    GATEWAY,
    HTTP_ROUTE,
    GRPC_ROUTE,
    REFERENCE_GRANT,
)

# What the watcher writes: the load balancer status of Ingresses (status_writer.py), and the status of
# these Gateway API kinds, each object read (get) right before its status patch (gateway_status.py).
INGRESS_STATUS_KINDS: tuple[Resource, ...] = (INGRESS,)
GATEWAY_STATUS_KINDS: tuple[Resource, ...] = (GATEWAY_CLASS, GATEWAY, HTTP_ROUTE, GRPC_ROUTE)


class Access(NamedTuple):
    """One right the watcher uses, as RBAC spells it: a verb on a resource (`plural`, or
    `plural/subresource`) of an API group ("" for the core group)."""

    group: str
    resource: str
    verb: str


def api_access(table: Sequence[Feed]) -> set[Access]:
    """Every request the watcher makes with these feeds: list and watch of each feed's resource, and the
    status writes. deploy/watch-k8s grants exactly these (tests/deploy/test_rbac.py)."""
    used = {Access(f.resource.group, f.resource.plural, verb) for f in table for verb in ("list", "watch")}
    used |= {Access(r.group, f"{r.plural}/status", "patch") for r in INGRESS_STATUS_KINDS}
    for r in GATEWAY_STATUS_KINDS:
        used |= {Access(r.group, r.plural, "get"), Access(r.group, f"{r.plural}/status", "patch")}
    return used


def _metadata(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def secret_filter(system_namespace: str) -> Accept:
    """Secrets the gateway may use: TLS certificates, CA bundles (`ca.crt`: proxy-ssl, auth-tls and
    cacert secrets), and every Secret of the system namespace (registry credentials)."""

    def accept(obj: Mapping[str, Any]) -> bool:
        if _metadata(obj).get("namespace") == system_namespace:
            return True
        data = obj.get("data")
        return obj.get("type") == TLS_SECRET_TYPE or (isinstance(data, Mapping) and CA_CERT_KEY in data)

    return accept


def named(name: str) -> Accept:
    """Only the object called `name` (backs up a field selector a server might ignore)."""

    def accept(obj: Mapping[str, Any]) -> bool:
        return _metadata(obj).get("name") == name

    return accept


def secret_feeds(watch_namespace: str, system_namespace: str, secret_namespaces: Sequence[str]) -> list[Feed]:
    """Where Secrets are read: in each of `secret_namespaces` alone when any are named (so the watcher
    needs no cluster-wide right to Secrets), else in the watched namespaces and the system namespace."""
    secrets = secret_filter(system_namespace)
    if secret_namespaces:
        return [Feed(SECRET, namespace, accept=secrets) for namespace in sorted(set(secret_namespaces))]
    watched = watch_namespace or None
    table = [Feed(SECRET, watched, accept=secrets)]
    if watched is not None and watched != system_namespace:
        table.append(Feed(SECRET, system_namespace, accept=secrets))
    return table


# A cold start lists the kinds routes point at before the routes themselves (each feed's first list only):
# the builder's versions then carry the clusters before the routes to them, and the last version of a
# cold start changes routes only, which Envoy applies much faster than clusters (bench cold_load).
BACKEND_KINDS = frozenset({SERVICE.kind, ENDPOINT_SLICE.kind})
ROUTE_KINDS = frozenset({INGRESS.kind, HTTP_ROUTE.kind, GRPC_ROUTE.kind})


def feeds(watch_namespace: str, system_namespace: str, secret_namespaces: Sequence[str] = ()) -> list[Feed]:
    """Every feed, for `watch_namespace` ("" = all namespaces), the Higress system namespace and the
    namespaces Secrets are restricted to (none: no restriction)."""
    watched = watch_namespace or None
    system = system_namespace
    table: list[Feed] = [
        Feed(SERVICE, watched),
        Feed(ENDPOINT_SLICE, watched),
        Feed(INGRESS, watched),
        Feed(INGRESS_CLASS),
        *secret_feeds(watch_namespace, system_namespace, secret_namespaces),
    ]
    table += [Feed(CONFIG_MAP, system, f"metadata.name={name}", named(name)) for name in HIGRESS_CONFIG_MAPS]
    table += [
        # Higress honours its CRDs only in the system namespace, and McpBridge only by the name `default`.
        Feed(MCP_BRIDGE, system, f"metadata.name={MCP_BRIDGE_NAME}", named(MCP_BRIDGE_NAME)),
        Feed(WASM_PLUGIN, system),
        Feed(HTTP2RPC, system),
        Feed(NAMESPACE),
        Feed(GATEWAY_CLASS),
        Feed(GATEWAY, watched),
        Feed(HTTP_ROUTE, watched),
        Feed(GRPC_ROUTE, watched),
        Feed(REFERENCE_GRANT, watched),
    ]
    return table
