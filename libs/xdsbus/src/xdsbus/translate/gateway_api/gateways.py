"""GatewayClasses and Gateways: which are ours, their listeners' validity, certificates and conflicts.

Every Gateway of an accepted class shares the one Envoy: a listener contributes to the Envoy listener
of its port (`0.0.0.0_<port>`). A port has one protocol: the Ingress ports' (settings.http_port is HTTP,
settings.https_port HTTPS), else the oldest Gateway's listener on it; a listener asking for another
protocol on that port is Conflicted (ProtocolConflict) and not programmed. Two listeners of one Gateway
with the same port and hostname conflict too (HostnameConflict); the same port and hostname on different
Gateways is shared, their routes merged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from xdsbus.contract.status import Condition, ListenerStatus
from xdsbus.fold.state import ObjectRef
from xdsbus.model.gateway_api import GATEWAY_GROUP, GATEWAY_KIND, Gateway, GatewayClass, Listener
from xdsbus.model.secrets import secret_name
from xdsbus.translate.gateway_api import conditions as c
from xdsbus.translate.gateway_api.attachment import listener_kinds
from xdsbus.translate.gateway_api.reference_grants import ReferenceGrants

SUPPORTED_PROTOCOLS = ("HTTP", "HTTPS")
SUPPORTED_API_VERSION = "v1"
ADDRESS_TYPES = ("IPAddress", "Hostname")


@dataclass
class ListenerEntry:
    """One listener of one of our Gateways, as translation and status need it."""

    gateway_ref: ObjectRef
    gateway: Gateway
    spec: Listener
    port: int
    protocol: str
    hostname: str
    kinds: set[str]
    cert_secret: str = ""
    accepted: bool = True
    programmed: bool = True
    conditions: list[Condition] = field(default_factory=list)
    attached: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def status(self) -> ListenerStatus:
        return ListenerStatus(name=self.name, attached_routes=self.attached, conditions=list(self.conditions))


def class_accepted(gateway_class: GatewayClass) -> bool:
    return gateway_class.spec.controller_name == c.CONTROLLER_NAME


def class_conditions(gateway_class: GatewayClass) -> list[Condition]:
    generation = gateway_class.metadata.generation
    return [
        c.condition(c.ACCEPTED, True, c.R_ACCEPTED, f"handled by {c.CONTROLLER_NAME}", generation),
        # The translation reads the v1 API (and ReferenceGrant v1beta1); the CRDs installed are not
        # visible to it, so this says what it supports rather than what it found.
        c.condition(
            c.SUPPORTED_VERSION,
            True,
            c.R_SUPPORTED_VERSION,
            f"Gateway API {SUPPORTED_API_VERSION} is supported",
            generation,
        ),
    ]


def address_problem(gw: Gateway, addresses: tuple[str, ...]) -> tuple[str, str] | None:
    """(reason, message) when the Gateway asks for an address it cannot have, else None.

    Every Gateway is served at the gateway's addresses (the builder's --gateway-address): a requested
    address must be one of them, and Hostname/IPAddress are the only types."""
    for address in gw.spec.addresses:
        if address.type not in ADDRESS_TYPES:
            return c.R_UNSUPPORTED_ADDRESS, f"address type {address.type} is not supported"
        if address.value and address.value not in addresses:
            served = ", ".join(addresses) or "none configured"
            return (
                c.R_ADDRESS_NOT_USABLE,
                f"address {address.value} is not one of the gateway's addresses ({served})",
            )
    return None


def _certificate(
    entry: ListenerEntry,
    grants: ReferenceGrants,
    secret_ok: Callable[[str], bool],
    watched: set[str],
) -> tuple[str, str] | None:
    """The listener's certificate SDS name, or (reason, message) of why it cannot have one."""
    tls = entry.spec.tls
    gw = entry.gateway.metadata
    if tls is None or not tls.certificate_refs:
        return (c.R_INVALID_CERTIFICATE_REF, f"listener {entry.name}: HTTPS needs tls.certificateRefs")
    if tls.mode != "Terminate":
        return (c.R_UNSUPPORTED_VALUE, f"listener {entry.name}: TLS mode {tls.mode} is not supported")
    chosen = ""
    for ref in tls.certificate_refs:
        namespace = ref.namespace or gw.namespace
        if ref.group not in ("", "core") or ref.kind != "Secret":
            return (
                c.R_INVALID_CERTIFICATE_REF,
                f"listener {entry.name}: {ref.group}/{ref.kind} is not a Secret",
            )
        if not grants.allows(
            from_group=GATEWAY_GROUP,
            from_kind=GATEWAY_KIND,
            from_namespace=gw.namespace,
            to_group="",
            to_kind="Secret",
            to_namespace=namespace,
            to_name=ref.name,
        ):
            return (
                c.R_REF_NOT_PERMITTED,
                f"listener {entry.name}: no ReferenceGrant in {namespace} allows Secret {ref.name}",
            )
        name = secret_name(namespace, ref.name)
        watched.add(name)
        if not secret_ok(name):
            return (
                c.R_INVALID_CERTIFICATE_REF,
                f"listener {entry.name}: Secret {namespace}/{ref.name} not found or holds no certificate",
            )
        chosen = chosen or name
    return ("", chosen)


def gateway_listeners(
    gateways: list[tuple[ObjectRef, Gateway]],
    grants: Callable[[str], ReferenceGrants],
    secret_ok: Callable[[str], bool],
    reserved_ports: dict[int, str],
    addresses: tuple[str, ...] = (),
) -> tuple[dict[ObjectRef, list[ListenerEntry]], set[str]]:
    """Every listener of our Gateways with its verdict, and the SDS names they refer to.

    `gateways` must be in precedence order (oldest first), which decides port protocol conflicts. A
    Gateway asking for an address it cannot have programs none of its listeners."""
    port_protocol = dict(reserved_ports)
    watched: set[str] = set()
    out: dict[ObjectRef, list[ListenerEntry]] = {}
    for ref, gw in gateways:
        generation = gw.metadata.generation
        unusable = address_problem(gw, addresses)
        entries: list[ListenerEntry] = []
        own_ports: dict[int, str] = {}
        own_hosts: dict[tuple[int, str], int] = {}
        for spec in gw.spec.listeners:
            key = (spec.port, (spec.hostname or "").lower())
            own_hosts[key] = own_hosts.get(key, 0) + 1
            own_ports.setdefault(spec.port, spec.protocol.upper())
        for spec in gw.spec.listeners:
            protocol = spec.protocol.upper()
            kinds, invalid_kinds = listener_kinds(spec)
            entry = ListenerEntry(
                gateway_ref=ref,
                gateway=gw,
                spec=spec,
                port=spec.port,
                protocol=protocol,
                hostname=(spec.hostname or "").lower(),
                kinds=kinds,
            )
            accepted: tuple[bool, str, str] = (True, c.R_ACCEPTED, "listener accepted")
            resolved: tuple[bool, str, str] = (True, c.R_RESOLVED_REFS, "references resolved")
            conflicted: tuple[bool, str, str] = (False, c.R_NO_CONFLICTS, "no conflicts")
            if protocol not in SUPPORTED_PROTOCOLS:
                accepted = (False, c.R_UNSUPPORTED_PROTOCOL, f"protocol {spec.protocol} is not supported")
            elif own_ports[spec.port] != protocol or port_protocol.get(spec.port, protocol) != protocol:
                conflicted = (
                    True,
                    c.R_PROTOCOL_CONFLICT,
                    f"port {spec.port} already serves another protocol",
                )
            elif own_hosts[(spec.port, entry.hostname)] > 1:
                conflicted = (
                    True,
                    c.R_HOSTNAME_CONFLICT,
                    f"several listeners on port {spec.port} with hostname {entry.hostname or '(none)'}",
                )
            if invalid_kinds:
                resolved = (
                    False,
                    c.R_INVALID_ROUTE_KINDS,
                    f"unsupported route kinds: {', '.join(invalid_kinds)}",
                )
            if accepted[0] and protocol == "HTTPS":
                cert = _certificate(entry, grants(ref.source), secret_ok, watched)
                if cert is not None and cert[0]:
                    resolved = (False, cert[0], cert[1])
                    if cert[0] == c.R_UNSUPPORTED_VALUE:
                        accepted = (False, c.R_UNSUPPORTED_VALUE, cert[1])
                elif cert is not None:
                    entry.cert_secret = cert[1]
            entry.accepted = accepted[0] and not conflicted[0]
            # A listener with some invalid route kinds still serves the valid ones.
            entry.programmed = entry.accepted and (resolved[0] or resolved[1] == c.R_INVALID_ROUTE_KINDS)
            programmed = (
                (True, c.R_PROGRAMMED, "listener programmed")
                if entry.programmed
                else (False, c.R_INVALID, "listener is not served")
            )
            if entry.programmed and unusable is not None:
                entry.programmed = False
                programmed = (False, c.R_INVALID, f"listener is not served: {unusable[1]}")
            if entry.programmed:
                port_protocol.setdefault(spec.port, protocol)
            entry.conditions = [
                c.condition(c.ACCEPTED, *accepted, generation),
                c.condition(c.PROGRAMMED, *programmed, generation),
                c.condition(c.RESOLVED_REFS, *resolved, generation),
                c.condition(c.CONFLICTED, *conflicted, generation),
            ]
            entries.append(entry)
        out[ref] = entries
    return out, watched


def gateway_conditions(
    gw: Gateway, listeners: list[ListenerEntry], addresses: tuple[str, ...] = ()
) -> list[Condition]:
    generation = gw.metadata.generation
    any_accepted = any(e.accepted for e in listeners)
    all_accepted = all(e.accepted for e in listeners)
    any_programmed = any(e.programmed for e in listeners)
    if all_accepted:
        accepted = c.condition(c.ACCEPTED, True, c.R_ACCEPTED, "gateway accepted", generation)
    else:
        accepted = c.condition(
            c.ACCEPTED,
            any_accepted or not listeners,
            c.R_LISTENERS_NOT_VALID,
            "some listeners are invalid",
            generation,
        )
    programmed = c.condition(
        c.PROGRAMMED,
        any_programmed,
        c.R_PROGRAMMED if any_programmed else c.R_INVALID,
        "gateway programmed" if any_programmed else "no listener is served",
        generation,
    )
    unusable = address_problem(gw, addresses)
    if unusable is not None:
        programmed = c.condition(c.PROGRAMMED, False, *unusable, generation)
    return [accepted, programmed]
