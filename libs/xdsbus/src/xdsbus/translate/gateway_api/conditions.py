"""Status conditions and reasons of the Gateway API, and small helpers to make them."""

from __future__ import annotations

from xdsbus.contract.status import Condition

CONTROLLER_NAME = "higress.io/gateway-controller"

# Condition types.
ACCEPTED = "Accepted"
PROGRAMMED = "Programmed"
RESOLVED_REFS = "ResolvedRefs"
CONFLICTED = "Conflicted"
SUPPORTED_VERSION = "SupportedVersion"
PARTIALLY_INVALID = "PartiallyInvalid"

# Reasons.
R_ACCEPTED = "Accepted"
R_PROGRAMMED = "Programmed"
R_RESOLVED_REFS = "ResolvedRefs"
R_INVALID = "Invalid"
R_LISTENERS_NOT_VALID = "ListenersNotValid"
R_UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
R_UNSUPPORTED_VALUE = "UnsupportedValue"
R_INVALID_CERTIFICATE_REF = "InvalidCertificateRef"
R_REF_NOT_PERMITTED = "RefNotPermitted"
R_INVALID_ROUTE_KINDS = "InvalidRouteKinds"
R_NO_CONFLICTS = "NoConflicts"
R_PROTOCOL_CONFLICT = "ProtocolConflict"
R_HOSTNAME_CONFLICT = "HostnameConflict"
R_NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
R_NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
R_NO_MATCHING_PARENT = "NoMatchingParent"
R_BACKEND_NOT_FOUND = "BackendNotFound"
R_INVALID_KIND = "InvalidKind"
# No port on a Service backendRef: the spec has no reason of its own for it.
R_UNSUPPORTED_VALUE_PORT = "UnsupportedValue"
R_PENDING = "Pending"
R_SUPPORTED_VERSION = "SupportedVersion"
R_ADDRESS_NOT_USABLE = "AddressNotUsable"
R_UNSUPPORTED_ADDRESS = "UnsupportedAddress"


def condition(type_: str, ok: bool, reason: str, message: str, generation: int) -> Condition:
    return Condition(
        type=type_,
        status="True" if ok else "False",
        reason=reason,
        message=message,
        observed_generation=generation,
    )
