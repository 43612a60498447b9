"""Which listeners a route may attach to: allowedRoutes namespaces (Same, All, Selector) and kinds."""

from __future__ import annotations

from xdsbus.model.gateway_api import GATEWAY_GROUP, GRPC_ROUTE_KIND, HTTP_ROUTE_KIND, LabelSelector, Listener

# The route kinds each listener protocol serves.
PROTOCOL_KINDS = {
    "HTTP": (HTTP_ROUTE_KIND, GRPC_ROUTE_KIND),
    "HTTPS": (HTTP_ROUTE_KIND, GRPC_ROUTE_KIND),
}


def listener_kinds(listener: Listener) -> tuple[set[str], list[str]]:
    """The route kinds a listener accepts, and the kinds it names that it cannot (InvalidRouteKinds)."""
    supported = PROTOCOL_KINDS.get(listener.protocol.upper(), ())
    if not listener.allowed_routes.kinds:
        return set(supported), []
    kinds: set[str] = set()
    invalid: list[str] = []
    for rgk in listener.allowed_routes.kinds:
        if rgk.group == GATEWAY_GROUP and rgk.kind in supported:
            kinds.add(rgk.kind)
        else:
            invalid.append(f"{rgk.group}/{rgk.kind}")
    return kinds, invalid


def selector_matches(selector: LabelSelector, labels: dict[str, str]) -> bool:
    """Kubernetes label selector semantics (matchLabels and matchExpressions, all must hold)."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        op = req.operator
        if op == "In" and labels.get(req.key) not in req.values:
            return False
        if op == "NotIn" and req.key in labels and labels[req.key] in req.values:
            return False
        if op == "Exists" and req.key not in labels:
            return False
        if op == "DoesNotExist" and req.key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def namespace_allowed(
    listener: Listener,
    gateway_namespace: str,
    route_namespace: str,
    namespace_labels: dict[str, dict[str, str]],
) -> tuple[bool, str]:
    """Whether routes of `route_namespace` may attach, and why not.

    Namespaces are read from `Namespace` objects when a source publishes them; a Selector can only
    match a namespace whose labels are known (besides `kubernetes.io/metadata.name`, which Kubernetes
    always sets)."""
    spec = listener.allowed_routes.namespaces
    origin = spec.from_
    if origin == "All":
        return True, ""
    if origin == "Same":
        if route_namespace == gateway_namespace:
            return True, ""
        return False, f"listener {listener.name} only allows routes from namespace {gateway_namespace}"
    if origin == "Selector":
        if spec.selector is None:
            return False, f"listener {listener.name}: namespaces from Selector without a selector"
        labels = {"kubernetes.io/metadata.name": route_namespace, **namespace_labels.get(route_namespace, {})}
        if selector_matches(spec.selector, labels):
            return True, ""
        known = "" if route_namespace in namespace_labels else " (its Namespace object is unknown)"
        return (
            False,
            f"listener {listener.name}: namespace {route_namespace} does not match the selector{known}",
        )
    return False, f"listener {listener.name}: namespaces from {origin} allows no route"
