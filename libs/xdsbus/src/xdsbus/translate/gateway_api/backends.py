"""backendRefs (and mirror targets) to route destinations, with the ResolvedRefs problems they have.

An invalid backendRef (unknown kind, missing Service or port, cross-namespace without ReferenceGrant)
keeps its weight and points at a cluster that never exists; its route answers 500 for that share
(`Route.cluster_not_found_status`), as the spec asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xdsbus.model.gateway_api import BackendRef
from xdsbus.model.routes import Destination, UpstreamPolicy, UpstreamProtocol
from xdsbus.model.services import ServiceModel, k8s_hostname
from xdsbus.translate.gateway_api import conditions as c
from xdsbus.translate.gateway_api.reference_grants import ReferenceGrants

# The hostname of the cluster invalid backends point at; `.invalid` is reserved (RFC 2606).
INVALID_BACKEND_HOST = "backend.xdsbus.invalid"
INVALID_BACKEND_STATUS = 500
_HTTP2_PROTOCOLS = ("HTTP2", "GRPC")


@dataclass
class BackendResolver:
    """Resolves the backendRefs of one route; collects what they need and what is wrong with them."""

    route_kind: str
    route_namespace: str
    grants: ReferenceGrants
    lookup: Callable[[str], ServiceModel | None]
    http2: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)
    services: set[str] = field(default_factory=set)

    def _problem(self, reason: str, message: str) -> None:
        if (reason, message) not in self.problems:
            self.problems.append((reason, message))

    def resolve(self, ref: BackendRef, weight: int | None = None) -> Destination | None:
        """The destination of `ref`, or None when it is invalid (the problem is recorded)."""
        namespace = ref.namespace or self.route_namespace
        if ref.group not in ("", "core") or ref.kind != "Service":
            self._problem(c.R_INVALID_KIND, f"backendRef {ref.group}/{ref.kind} {ref.name} is not a Service")
            return None
        if not self.grants.allows(
            from_group="gateway.networking.k8s.io",
            from_kind=self.route_kind,
            from_namespace=self.route_namespace,
            to_group="",
            to_kind="Service",
            to_namespace=namespace,
            to_name=ref.name,
        ):
            self._problem(
                c.R_REF_NOT_PERMITTED, f"backendRef {namespace}/{ref.name}: no ReferenceGrant allows it"
            )
            return None
        host = k8s_hostname(ref.name, namespace)
        self.services.add(host)
        service = self.lookup(host)
        if service is None:
            self._problem(c.R_BACKEND_NOT_FOUND, f"Service {namespace}/{ref.name} not found")
            return None
        if ref.port is None:
            self._problem(c.R_UNSUPPORTED_VALUE_PORT, f"backendRef {namespace}/{ref.name} needs a port")
            return None
        port = next((p for p in service.ports if p.number == ref.port), None)
        if port is None:
            self._problem(c.R_BACKEND_NOT_FOUND, f"Service {namespace}/{ref.name} has no port {ref.port}")
            return None
        policy = UpstreamPolicy()
        if self.http2 and port.protocol.upper() not in _HTTP2_PROTOCOLS:
            policy = UpstreamPolicy(protocol=UpstreamProtocol.HTTP2)
        return Destination(
            hostname=host, port=ref.port, weight=ref.weight if weight is None else weight, policy=policy
        )


def invalid_destination(weight: int) -> Destination:
    return Destination(hostname=INVALID_BACKEND_HOST, port=1, weight=weight)
