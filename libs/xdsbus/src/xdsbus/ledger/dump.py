"""Envoy config JSON for a set of resources: what `xdsbus replay --dump`, `xdsbus dump` and the edge's
/debug/configz show. Private key material is redacted unless revealing is asked for (docs/design.md §10):
inline bytes or strings of a TLS certificate's private key, password and PKCS#12, of a generic secret and
of session ticket keys, wherever they sit (a Secret, or a TLS context inline in a listener or cluster)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import extension_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2, scoped_route_pb2
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2
from google.protobuf import any_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message

from xdsbus.contract.type_urls import (
    CLUSTER,
    ENDPOINT,
    EXTENSION_CONFIG,
    LISTENER,
    ROUTE,
    SCOPED_ROUTE,
    SECRET,
    TYPE_ORDER,
)

# Registers every type the translator packs into an Any (filters, transport sockets, extension configs):
# JSON and redaction need them, in processes that never import the translator itself.
from xdsbus.translate import envoy_types  # noqa: F401

FILE_NAMES = {
    CLUSTER: "clusters.json",
    ENDPOINT: "endpoints.json",
    LISTENER: "listeners.json",
    EXTENSION_CONFIG: "extension_configs.json",
    SCOPED_ROUTE: "scoped_routes.json",
    ROUTE: "routes.json",
    SECRET: "secrets.json",
}

_CLASSES: dict[str, type[Message]] = {
    CLUSTER: cluster_pb2.Cluster,
    ENDPOINT: endpoint_pb2.ClusterLoadAssignment,
    LISTENER: listener_pb2.Listener,
    EXTENSION_CONFIG: extension_pb2.TypedExtensionConfig,
    SCOPED_ROUTE: scoped_route_pb2.ScopedRouteConfiguration,
    ROUTE: route_pb2.RouteConfiguration,
    SECRET: secret_pb2.Secret,
}


REDACTED = "[redacted]"
_TLS = "envoy.extensions.transport_sockets.tls.v3."
# Fields (DataSource, or repeated DataSource) that hold secret bytes, by message type.
_SECRET_FIELDS = {
    _TLS + "TlsCertificate": frozenset({"private_key", "password", "pkcs12"}),
    _TLS + "GenericSecret": frozenset({"secret"}),
    _TLS + "TlsSessionTicketKeys": frozenset({"keys"}),
}
_INLINE = frozenset({"inline_bytes", "inline_string"})


def to_json(any_bytes: bytes, *, reveal: bool = False) -> dict[str, object]:
    """One serialized Any as Envoy's JSON, private key material redacted unless `reveal`."""
    wrapper = any_pb2.Any()
    wrapper.ParseFromString(any_bytes)
    message = _CLASSES[wrapper.type_url]()
    wrapper.Unpack(message)
    if not reveal:
        redact(message)
    out = json_format.MessageToDict(message, preserving_proto_field_name=True)
    out["@type"] = wrapper.type_url
    return out


def sealed_json(type_url: str, name: str, kid: str | None) -> dict[str, object]:
    """What a dump shows for a sealed body it cannot open: its name and the id of the key it needs."""
    return {"@type": type_url, "name": name, "sealed": {"kid": kid}}


def redact(message: Message) -> bool:
    """Replace every inline secret in `message` (nested messages and packed Anys included) by
    `[redacted]`, in place; whether anything was."""
    changed = False
    secret_fields = _SECRET_FIELDS.get(message.DESCRIPTOR.full_name, frozenset())
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            items = [v for v in value.values() if isinstance(v, Message)]
        else:
            items = list(value) if field.is_repeated else [value]
        for item in items:
            if field.name in secret_fields:
                changed |= _redact_source(item)
            elif field.message_type.full_name == "google.protobuf.Any":
                changed |= _redact_any(item)
            else:
                changed |= redact(item)
    return changed


def _redact_source(source: Message) -> bool:
    """A DataSource: redacted when it holds the bytes themselves (a file name or variable is kept)."""
    if source.WhichOneof("specifier") in _INLINE:
        source.inline_string = REDACTED  # type: ignore[attr-defined]
        return True
    return False


def _redact_any(packed: Message) -> bool:
    name = packed.type_url.rsplit("/", 1)[-1]  # type: ignore[attr-defined]
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(name)
    except KeyError:
        return False  # a type this process does not know: nothing it could have redacted either
    inner = message_factory.GetMessageClass(descriptor)()
    if not packed.Unpack(inner):  # type: ignore[attr-defined]
        return False
    if not redact(inner):
        return False
    packed.Pack(inner)  # type: ignore[attr-defined]
    return True


def write_dump(
    directory: Path,
    resources: Iterable[tuple[str, bytes | dict[str, object]]],
    *,
    reveal: bool = False,
) -> list[Path]:
    """Write one file per resource type: `{"resources": [...]}` like an xDS response, sorted by name.
    A resource is its serialized Any, or already its JSON (a sealed body shown as sealed)."""
    by_type: dict[str, list[dict[str, object]]] = {t: [] for t in TYPE_ORDER}
    for type_url, body in resources:
        by_type[type_url].append(body if isinstance(body, dict) else to_json(body, reveal=reveal))
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for type_url in TYPE_ORDER:
        path = directory / FILE_NAMES[type_url]
        path.write_text(json.dumps({"resources": by_type[type_url]}, indent=2, sort_keys=True) + "\n")
        written.append(path)
    return written
