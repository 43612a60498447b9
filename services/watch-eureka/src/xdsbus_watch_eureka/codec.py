"""Eureka's application documents (`/apps`, `/apps/delta`), JSON or XML, as typed instances.

The two representations the server produces (docs/registries.md §3.1) map onto one tree: the XML is turned
into the shape of the Jackson JSON (`<port enabled="true">8080</port>` becomes `{"@enabled": "true", "$":
"8080"}`, repeated elements become lists), so one reader serves both. The reader is tolerant where real
servers differ (a bare object instead of a one-element list from old XStream/Jettison servers, numbers as
strings) and strict where a value would make a wrong endpoint (an `ipAddr` that is not an IP, no port): such
an instance is kept for the hashcode but marked with a `problem` and left out of the endpoints."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from collections import Counter
from collections.abc import Iterable
from typing import Any
from xml.etree import ElementTree

from xdsbus.model.registry import METADATA_PROTOCOLS

# InstanceInfo.InstanceStatus; anything else reads as UNKNOWN, as InstanceStatus.toEnum does.
STATUSES = frozenset({"UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN"})
STATUS_UP = "UP"
ADDED, MODIFIED, DELETED = "ADDED", "MODIFIED", "DELETED"


class DocumentError(ValueError):
    """The body is not an applications document at all (not JSON/XML, or the wrong root)."""


@dataclasses.dataclass(frozen=True, slots=True)
class EurekaInstance:
    """One instance as far as the gateway cares; equal content compares equal."""

    app: str
    instance_id: str
    status: str
    # ADDED / MODIFIED / DELETED in a delta; "" in a full document.
    action: str = ""
    # The IP endpoints use; "" when `ipAddr` is not an IP (see `problem`).
    address: str = ""
    # The port endpoints use (`port` when enabled, else `securePort` when enabled, else `port` as
    # Higress does); 0 when there is none.
    port: int = 0
    # Only the secure port is enabled: the instance speaks TLS.
    secure: bool = False
    # Normalized metadata `protocol`, "" when not set (or not one we know, see `problem`).
    protocol: str = ""
    zone: str = ""
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    # What is wrong with the instance as registered, "" when nothing is.
    problem: str = ""

    @property
    def usable(self) -> bool:
        """Whether it can be an endpoint (an IP and a port)."""
        return bool(self.address) and self.port > 0

    @property
    def healthy(self) -> bool:
        return self.status == STATUS_UP


@dataclasses.dataclass(slots=True)
class Document:
    """An applications document: `/apps` (full) or `/apps/delta`."""

    versions_delta: str = ""
    # None when the document has none (a delta without one is treated as a mismatch, as Eureka's
    # DiscoveryClient does).
    apps_hashcode: str | None = None
    instances: list[EurekaInstance] = dataclasses.field(default_factory=list)
    # Entries that cannot even be keyed (no instance id): (what, reason) to report, and their statuses,
    # which the server still counts in `apps__hashcode`.
    problems: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    unkeyed_statuses: Counter[str] = dataclasses.field(default_factory=Counter)


def reconcile_hashcode(statuses: Iterable[str]) -> str:
    """Eureka's `Applications.getReconcileHashCode`: instance counts per status, sorted by status name,
    as `STATUS_COUNT_` pieces (`DOWN_1_UP_2_`; "" for an empty registry)."""
    counts = Counter(statuses)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


def parse_document(body: bytes) -> Document:
    """Parse a full or delta document. The format is told by the body, not the Content-Type: some
    servers ignore `Accept` and some proxies relabel. Raises DocumentError when it is neither."""
    head = body.lstrip()[:1]
    if head == b"{":
        try:
            tree = json.loads(body)
        except ValueError as exc:
            raise DocumentError(f"invalid JSON: {exc}") from exc
        if not isinstance(tree, dict) or not isinstance(tree.get("applications"), dict):
            raise DocumentError('JSON without an "applications" object')
        return _document(tree["applications"])
    if head == b"<":
        try:
            root = ElementTree.fromstring(body)
        except ElementTree.ParseError as exc:
            raise DocumentError(f"invalid XML: {exc}") from exc
        if root.tag != "applications":
            raise DocumentError(f"XML root is <{root.tag}>, not <applications>")
        tree = _xml_to_tree(root)
        return _document(tree if isinstance(tree, dict) else {})
    raise DocumentError(f"neither JSON nor XML: {body[:60]!r}")


def _xml_to_tree(elem: ElementTree.Element) -> Any:
    """The Jackson/Jettison JSON shape of an XML element: attributes as `@name`, text as `$` when there
    are attributes, a plain string when there is only text, repeated children as lists."""
    children = list(elem)
    if not children and not elem.attrib:
        return (elem.text or "").strip()
    tree: dict[str, Any] = {f"@{k}": v for k, v in elem.attrib.items()}
    if not children:
        # `<metadata class="...EmptyMap"/>` has no text: no `$` (which would read as a metadata key).
        if (elem.text or "").strip():
            tree["$"] = (elem.text or "").strip()
        return tree
    for child in children:
        value = _xml_to_tree(child)
        if child.tag not in tree:
            tree[child.tag] = value
        elif isinstance(tree[child.tag], list):
            tree[child.tag].append(value)
        else:
            tree[child.tag] = [tree[child.tag], value]
    return tree


def _as_list(value: Any) -> list[Any]:
    """Jackson always writes arrays; old servers wrote a bare object for one element, or nothing."""
    if value is None or value == "":
        return []
    return value if isinstance(value, list) else [value]


def _text(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value).strip()


def _document(tree: dict[str, Any]) -> Document:
    doc = Document(versions_delta=_text(tree.get("versions__delta")))
    if "apps__hashcode" in tree:
        doc.apps_hashcode = _text(tree["apps__hashcode"])
    for app in _as_list(tree.get("application")):
        if not isinstance(app, dict):
            doc.problems.append(("?", "an application entry is not an object"))
            continue
        name = _text(app.get("name"))
        for raw in _as_list(app.get("instance")):
            parsed = _instance(name, raw)
            if isinstance(parsed, EurekaInstance):
                doc.instances.append(parsed)
            else:
                what, reason, status = parsed
                doc.problems.append((what, reason))
                doc.unkeyed_statuses[status] += 1
    return doc


def _status(raw: dict[str, Any]) -> str:
    # A missing status is InstanceInfo's default (UP); an unknown one is UNKNOWN (InstanceStatus.toEnum).
    if raw.get("status") is None:
        return STATUS_UP
    status = _text(raw["status"]).upper()
    return status if status in STATUSES else "UNKNOWN"


def _port(value: Any, enabled_by_default: bool) -> tuple[int, bool]:
    """(number, enabled) of a `port`/`securePort` field: `{"$": 8080, "@enabled": "true"}`, also a bare
    number; number 0 when absent or not a valid port."""
    enabled = enabled_by_default
    if isinstance(value, dict):
        if "@enabled" in value:
            enabled = _text(value["@enabled"]).lower() == "true"
        value = value.get("$")
    try:
        number = int(_text(value))
    except ValueError:
        return 0, enabled
    return (number, enabled) if 0 < number < 65536 else (0, enabled)


def _instance(app: str, raw: Any) -> EurekaInstance | tuple[str, str, str]:
    """An instance, or (what, reason, status) when it cannot be keyed at all."""
    if not isinstance(raw, dict):
        return f"{app or '?'}/?", "an instance entry is not an object", "UNKNOWN"
    app = app or _text(raw.get("app"))
    status = _status(raw)
    # InstanceInfo.getId(): the instanceId, else the hostName.
    instance_id = _text(raw.get("instanceId")) or _text(raw.get("hostName"))
    if not app or not instance_id:
        return f"{app or '?'}/?", "instance without app name or instanceId/hostName", status
    problems: list[str] = []

    metadata: dict[str, str] = {}
    raw_metadata = raw.get("metadata")
    if isinstance(raw_metadata, dict):
        # `@class` is Jackson's marker for an empty map (`java.util.Collections$EmptyMap`), not metadata.
        metadata = {str(k): _text(v) for k, v in raw_metadata.items() if not str(k).startswith("@")}
    elif raw_metadata not in (None, ""):
        problems.append("metadata is not a map")

    address = _text(raw.get("ipAddr"))
    try:
        address = str(ipaddress.ip_address(address))
    except ValueError:
        # Endpoints are static IPs (as Higress, which skips such apps); a host name cannot be one.
        problems.append(f"ipAddr {address!r} is not an IP address")
        address = ""

    # Eureka's defaults: the plain port enabled, the secure one not.
    plain, plain_enabled = _port(raw.get("port"), True)
    secure, secure_enabled = _port(raw.get("securePort"), False)
    port, only_secure = plain, False
    if not (plain and plain_enabled) and secure and secure_enabled:
        port, only_secure = secure, True
    if not port:
        problems.append(f"no valid port (port {raw.get('port')!r}, securePort {raw.get('securePort')!r})")

    protocol = ""
    if metadata.get("protocol"):
        protocol = METADATA_PROTOCOLS.get(metadata["protocol"].lower(), "")
        if not protocol:
            problems.append(f"metadata protocol {metadata['protocol']!r} is not HTTP/HTTPS/HTTP2/GRPC/GRPCS")

    zone = metadata.get("zone", "")
    dc = raw.get("dataCenterInfo")
    if isinstance(dc, dict) and isinstance(dc.get("metadata"), dict):
        # On AWS the zone is the data center's availability-zone (py-eureka-client's Instance.zone).
        zone = _text(dc["metadata"].get("availability-zone")) or zone

    return EurekaInstance(
        app=app,
        instance_id=instance_id,
        status=status,
        action=_text(raw.get("actionType")).upper(),
        address=address,
        port=port,
        secure=only_secure,
        protocol=protocol,
        zone=zone,
        metadata=metadata,
        problem="; ".join(problems),
    )
