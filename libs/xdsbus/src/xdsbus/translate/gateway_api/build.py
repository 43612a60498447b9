"""The whole Gateway API translation: from the folded state's GatewayClasses, Gateways, routes,
ReferenceGrants and Namespaces to virtual hosts per port and the status of every object.

It is a pure function of its inputs, recomputed whole when any of them changes: Gateway API objects are
few, and recomputing keeps an incremental update equal to a full build by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

from xdsbus.contract.status import Condition, ObjectStatus, ParentStatus, Verdict
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.gateway_api import (
    GATEWAY_CLASS_KIND,
    GATEWAY_GROUP,
    GATEWAY_KIND,
    GRPC_ROUTE_KIND,
    HTTP_ROUTE_KIND,
    NAMESPACE_KIND,
    REFERENCE_GRANT_KIND,
    Gateway,
    GatewayClass,
    GRPCRoute,
    HTTPRoute,
    Namespace,
    ParentReference,
    ReferenceGrant,
)
from xdsbus.model.k8s import decode_object
from xdsbus.model.routes import Route, RouteOrigin
from xdsbus.model.services import ServiceModel
from xdsbus.translate.gateway_api import conditions as c
from xdsbus.translate.gateway_api.attachment import namespace_allowed
from xdsbus.translate.gateway_api.backends import BackendResolver
from xdsbus.translate.gateway_api.gateways import (
    ListenerEntry,
    class_accepted,
    class_conditions,
    gateway_conditions,
    gateway_listeners,
)
from xdsbus.translate.gateway_api.grpcroute import grpc_route_routes
from xdsbus.translate.gateway_api.hostnames import intersect
from xdsbus.translate.gateway_api.httproute import http_route_routes
from xdsbus.translate.gateway_api.isolation import PortListeners, https_chain_domains, misdirected_route
from xdsbus.translate.gateway_api.precedence import PrecedenceKey
from xdsbus.translate.gateway_api.reference_grants import ReferenceGrants

T = TypeVar("T")

# Every kind this translation reads (besides Services and Secrets, which it looks up).
GATEWAY_API_KINDS = (
    GATEWAY_CLASS_KIND,
    GATEWAY_KIND,
    HTTP_ROUTE_KIND,
    GRPC_ROUTE_KIND,
    REFERENCE_GRANT_KIND,
    NAMESPACE_KIND,
)


@dataclass
class HttpsGroup:
    """The listeners of one HTTPS port and hostname: one SNI filter chain, its certificate (the oldest
    listener's) and its virtual hosts."""

    hostname: str
    cert_secret: str
    vhosts: dict[str, list[Route]] = field(default_factory=dict)


@dataclass
class GatewayApiOutput:
    # Port → domain → ordered routes, for HTTP listeners.
    http: dict[int, dict[str, list[Route]]] = field(default_factory=dict)
    # Port → listener hostname ("" for none) → the group's chain, for HTTPS listeners.
    https: dict[int, dict[str, HttpsGroup]] = field(default_factory=dict)
    statuses: dict[ObjectRef, ObjectStatus] = field(default_factory=dict)
    # Service hostnames the routes looked up, and SDS names the listeners referred to: when one
    # changes, the translation must be redone.
    services: set[str] = field(default_factory=set)
    secrets: set[str] = field(default_factory=set)


def _decoded(
    state: FoldState, kind: str, cls: type[T], out: GatewayApiOutput
) -> Iterator[tuple[ObjectRef, T]]:
    for ref, stored in state.of_kind(kind):
        try:
            yield ref, decode_object(stored.body, cls)
        except Exception as exc:
            out.statuses[ref] = ObjectStatus(
                kind=ref.kind,
                source=ref.source,
                key=ref.key,
                state=Verdict.REJECTED,
                reason=f"{kind} {ref.key}: {exc}",
            )


def _parent_ref_dict(parent: ParentReference, namespace: str) -> dict[str, str | int]:
    out: dict[str, str | int] = {
        "group": parent.group,
        "kind": parent.kind,
        "namespace": parent.namespace or namespace,
        "name": parent.name,
    }
    if parent.section_name:
        out["sectionName"] = parent.section_name
    if parent.port:
        out["port"] = parent.port
    return out


@dataclass
class _RouteObject:
    ref: ObjectRef
    kind: str
    route: HTTPRoute | GRPCRoute

    @property
    def namespace(self) -> str:
        return self.route.metadata.namespace


def translate_gateway_api(
    state: FoldState,
    lookup: Callable[[str], ServiceModel | None],
    secret_ok: Callable[[str], bool],
    reserved_ports: dict[int, str],
    addresses: tuple[str, ...] = (),
    only: ObjectRef | None = None,
) -> GatewayApiOutput:
    """Translate every Gateway API object in `state`. `lookup` finds a service by hostname, `secret_ok`
    says whether an SDS name holds a certificate, `reserved_ports` are the Ingress listeners' ports
    with their protocols, `addresses` the gateway's own (Gateway status and requested addresses).
    With `only`, as if that Gateway were the only one: its own data plane (translate/gateway_scopes.py)."""
    out = GatewayApiOutput()
    classes: dict[tuple[str, str], GatewayClass] = {}
    for ref, gc in _decoded(state, GATEWAY_CLASS_KIND, GatewayClass, out):
        classes[(ref.source, gc.metadata.name)] = gc
        if class_accepted(gc):
            out.statuses[ref] = ObjectStatus(
                kind=ref.kind,
                source=ref.source,
                key=ref.key,
                state=Verdict.ACCEPTED,
                conditions=class_conditions(gc),
            )
    namespaces: dict[str, dict[str, dict[str, str]]] = {}
    for ref, ns in _decoded(state, NAMESPACE_KIND, Namespace, out):
        namespaces.setdefault(ref.source, {})[ns.metadata.name] = dict(ns.metadata.labels)
    grant_objects: dict[str, list[ReferenceGrant]] = {}
    for ref, grant in _decoded(state, REFERENCE_GRANT_KIND, ReferenceGrant, out):
        grant_objects.setdefault(ref.source, []).append(grant)
    grants = {source: ReferenceGrants(objs) for source, objs in grant_objects.items()}
    empty_grants = ReferenceGrants(())

    def grants_of(source: str) -> ReferenceGrants:
        return grants.get(source, empty_grants)

    owned: list[tuple[ObjectRef, Gateway]] = []
    for ref, gw in _decoded(state, GATEWAY_KIND, Gateway, out):
        gc = classes.get((ref.source, gw.spec.gateway_class_name))
        if gc is not None and class_accepted(gc) and only in (None, ref):
            owned.append((ref, gw))
    owned.sort(
        key=lambda item: (
            item[1].metadata.creation_timestamp,
            item[1].metadata.namespace,
            item[1].metadata.name,
            item[0],
        )
    )
    listeners, out.secrets = gateway_listeners(owned, grants_of, secret_ok, reserved_ports, addresses)
    by_name = {(ref.source, gw.metadata.namespace, gw.metadata.name): ref for ref, gw in owned}
    ports = _port_listeners(listeners)

    routes: list[_RouteObject] = []
    for ref, hr in _decoded(state, HTTP_ROUTE_KIND, HTTPRoute, out):
        routes.append(_RouteObject(ref, HTTP_ROUTE_KIND, hr))
    for ref, gr in _decoded(state, GRPC_ROUTE_KIND, GRPCRoute, out):
        routes.append(_RouteObject(ref, GRPC_ROUTE_KIND, gr))

    # (port, https hostname or None) → domain → route name → (key, route)
    http_routes: dict[int, dict[str, dict[str, tuple[PrecedenceKey, Route]]]] = {}
    https_routes: dict[tuple[int, str], dict[str, dict[str, tuple[PrecedenceKey, Route]]]] = {}
    https_certs: dict[tuple[int, str], str] = {}
    for ro in routes:
        _attach_route(
            ro,
            by_name,
            listeners,
            namespaces.get(ro.ref.source, {}),
            grants_of(ro.ref.source),
            lookup,
            ports,
            out,
            http_routes,
            https_routes,
            https_certs,
        )

    # Every listener hostname gets its virtual host, so that its requests stay with its own routes.
    for entries in listeners.values():
        for e in entries:
            if e.programmed and e.protocol == "HTTP" and e.hostname:
                http_routes.setdefault(e.port, {}).setdefault(e.hostname, {})
    for port, domains in sorted(http_routes.items()):
        out.http[port] = {
            d: [r for _, r in sorted(rs.values(), key=lambda kr: kr[0])] for d, rs in sorted(domains.items())
        }
    for (port, hostname), domains in sorted(https_routes.items()):
        group = HttpsGroup(hostname=hostname, cert_secret=https_certs[(port, hostname)])
        group.vhosts = {
            d: [r for _, r in sorted(rs.values(), key=lambda kr: kr[0])] for d, rs in sorted(domains.items())
        }
        out.https.setdefault(port, {})[hostname] = group
    # Programmed HTTPS listeners without routes still present their certificate.
    for entries in listeners.values():
        for e in entries:
            if e.programmed and e.protocol == "HTTPS" and (e.port, e.hostname) not in https_certs:
                https_certs[(e.port, e.hostname)] = e.cert_secret
                out.https.setdefault(e.port, {})[e.hostname] = HttpsGroup(
                    hostname=e.hostname, cert_secret=e.cert_secret
                )
    _add_misdirected(out.https, listeners, ports)

    for ref, gw in owned:
        entries = listeners[ref]
        conds = gateway_conditions(gw, entries, addresses)
        ok = all(cond.status == "True" for cond in conds)
        out.statuses[ref] = ObjectStatus(
            kind=ref.kind,
            source=ref.source,
            key=ref.key,
            state=Verdict.ACCEPTED if ok else Verdict.REJECTED,
            reason="" if ok else "; ".join(cond.message for cond in conds if cond.status != "True"),
            warnings=[
                f"listener {e.name}: {cond.type} {cond.reason}: {cond.message}"
                for e in entries
                for cond in e.conditions
                if (cond.status != "True") != (cond.type == c.CONFLICTED)
            ],
            conditions=conds,
            listeners=[e.status() for e in entries],
            addresses=list(addresses),
        )
    return out


def _port_listeners(listeners: dict[ObjectRef, list[ListenerEntry]]) -> dict[int, PortListeners]:
    hostnames: dict[int, set[str]] = {}
    for entries in listeners.values():
        for e in entries:
            if e.programmed:
                hostnames.setdefault(e.port, set()).add(e.hostname)
    return {port: PortListeners(tuple(sorted(names))) for port, names in hostnames.items()}


def _add_misdirected(
    https: dict[int, dict[str, HttpsGroup]],
    listeners: dict[ObjectRef, list[ListenerEntry]],
    ports: dict[int, PortListeners],
) -> None:
    """Give each SNI chain a virtual host for its own hostname (404 for what no route serves) and a
    421 answer for the hosts that belong to another listener of the port (see isolation.py)."""
    # The oldest listener of a port and hostname speaks for the chain (listeners are in precedence order).
    owners: dict[tuple[int, str], ListenerEntry] = {}
    for entries in listeners.values():
        for e in entries:
            if e.programmed and e.protocol == "HTTPS":
                owners.setdefault((e.port, e.hostname), e)
    for port, groups in https.items():
        for hostname, group in groups.items():
            owner = owners[(port, hostname)]
            origin = RouteOrigin(
                created=owner.gateway.metadata.creation_timestamp,
                kind=GATEWAY_KIND,
                key=owner.gateway_ref.key,
                source=owner.gateway_ref.source,
            )
            own, misdirected = https_chain_domains(hostname, ports[port])
            group.vhosts.setdefault(own, [])
            for domain in misdirected:
                name = f"gateway/{owner.gateway_ref.key}/listener/{owner.name}/misdirected/{domain}"
                group.vhosts[domain] = [misdirected_route(origin, name)]


def _attach_route(
    ro: _RouteObject,
    by_name: dict[tuple[str, str, str], ObjectRef],
    listeners: dict[ObjectRef, list[ListenerEntry]],
    namespace_labels: dict[str, dict[str, str]],
    grants: ReferenceGrants,
    lookup: Callable[[str], ServiceModel | None],
    ports: dict[int, PortListeners],
    out: GatewayApiOutput,
    http_routes: dict[int, dict[str, dict[str, tuple[PrecedenceKey, Route]]]],
    https_routes: dict[tuple[int, str], dict[str, dict[str, tuple[PrecedenceKey, Route]]]],
    https_certs: dict[tuple[int, str], str],
) -> None:
    route = ro.route
    meta = route.metadata
    generation = meta.generation
    resolver = BackendResolver(
        route_kind=ro.kind,
        route_namespace=meta.namespace,
        grants=grants,
        lookup=lookup,
        http2=ro.kind == GRPC_ROUTE_KIND,
    )
    origin = RouteOrigin(created=meta.creation_timestamp, kind=ro.kind, key=ro.ref.key, source=ro.ref.source)
    warnings: list[str] = []
    invalid_rules: set[int] = set()
    per_port: dict[int, list[tuple[PrecedenceKey, Route]]] = {}

    def translated(port: int) -> list[tuple[PrecedenceKey, Route]]:
        if port not in per_port:
            if isinstance(route, HTTPRoute):
                per_port[port] = http_route_routes(route, origin, port, resolver, warnings, invalid_rules)
            else:
                per_port[port] = grpc_route_routes(route, origin, port, resolver, warnings, invalid_rules)
        return per_port[port]

    parents: list[tuple[ParentReference, Condition]] = []
    for parent in route.spec.parent_refs:
        if parent.group != GATEWAY_GROUP or parent.kind != GATEWAY_KIND:
            continue
        gw_ref = by_name.get((ro.ref.source, parent.namespace or meta.namespace, parent.name))
        if gw_ref is None:
            # Not one of our Gateways (another controller's, or none): its status is not ours to write.
            continue
        candidates = [
            e
            for e in listeners[gw_ref]
            if (parent.section_name is None or e.name == parent.section_name)
            and (parent.port is None or e.port == parent.port)
        ]
        accepted: Condition | None = None
        reasons: list[tuple[str, str]] = []
        for e in candidates:
            if not e.accepted:
                reasons.append((c.R_NOT_ALLOWED_BY_LISTENERS, f"listener {e.name} is not accepted"))
                continue
            allowed, why = namespace_allowed(
                e.spec, e.gateway.metadata.namespace, meta.namespace, namespace_labels
            )
            if not allowed:
                reasons.append((c.R_NOT_ALLOWED_BY_LISTENERS, why))
                continue
            if ro.kind not in e.kinds:
                reasons.append((c.R_NOT_ALLOWED_BY_LISTENERS, f"listener {e.name} does not allow {ro.kind}"))
                continue
            domains = intersect(e.hostname, route.spec.hostnames)
            if not domains:
                reasons.append(
                    (
                        c.R_NO_MATCHING_LISTENER_HOSTNAME,
                        f"no hostname intersects listener {e.name}'s {e.hostname}",
                    )
                )
                continue
            e.attached += 1
            if accepted is None:
                accepted = c.condition(c.ACCEPTED, True, c.R_ACCEPTED, "route accepted", generation)
            if not e.programmed:
                continue
            if e.protocol == "HTTPS":
                target = https_routes.setdefault((e.port, e.hostname), {})
                https_certs.setdefault((e.port, e.hostname), e.cert_secret)
            else:
                target = http_routes.setdefault(e.port, {})
            for domain in domains:
                if ports[e.port].shadows(e.hostname, domain):
                    continue
                vhost = target.setdefault(domain, {})
                for key, model in translated(e.port):
                    vhost.setdefault(model.name, (key, model))
        if accepted is None:
            if not candidates:
                reason, message = (
                    c.R_NO_MATCHING_PARENT,
                    "no listener matches the parentRef's sectionName/port",
                )
            else:
                # The spec's order: a hostname mismatch is reported only when the listeners allow the route.
                hostname = [r for r in reasons if r[0] == c.R_NO_MATCHING_LISTENER_HOSTNAME]
                reason, message = (hostname or reasons)[0]
            accepted = c.condition(c.ACCEPTED, False, reason, message, generation)
        parents.append((parent, accepted))
    if not parents:
        return
    # Backends are resolved while translating; a route attached nowhere is translated for them anyway.
    if not per_port:
        translated(0)
    out.services |= resolver.services
    if resolver.problems:
        reason = resolver.problems[0][0]
        resolved = c.condition(
            c.RESOLVED_REFS, False, reason, "; ".join(m for _, m in resolver.problems), generation
        )
    else:
        resolved = c.condition(c.RESOLVED_REFS, True, c.R_RESOLVED_REFS, "references resolved", generation)
    extra: list[Condition] = []
    if invalid_rules and len(invalid_rules) < len(route.spec.rules):
        # The spec's condition for a route mixing valid and invalid rules; ours answer 500 for an
        # unservable rule (or drop an unservable match) and serve the rest.
        rules = ", ".join(str(i) for i in sorted(invalid_rules))
        extra.append(
            c.condition(
                c.PARTIALLY_INVALID,
                True,
                c.R_UNSUPPORTED_VALUE,
                f"invalid rule(s) {rules}: " + "; ".join(sorted(set(warnings))),
                generation,
            )
        )
    statuses = [
        ParentStatus(
            parent_ref=_parent_ref_dict(parent, meta.namespace),
            controller_name=c.CONTROLLER_NAME,
            conditions=[accepted, resolved, *extra],
        )
        for parent, accepted in parents
    ]
    ok = any(accepted.status == "True" for _, accepted in parents)
    out.statuses[ro.ref] = ObjectStatus(
        kind=ro.ref.kind,
        source=ro.ref.source,
        key=ro.ref.key,
        state=Verdict.ACCEPTED if ok else Verdict.REJECTED,
        reason="" if ok else "; ".join(a.message for _, a in parents),
        warnings=sorted(set(warnings)) + [m for _, m in resolver.problems],
        parents=statuses,
    )
