"""Parsing one manifest file into objects, with errors that name the file and the line.

A file is YAML (one or more documents) or JSON. Each document is one Kubernetes-style object
(apiVersion, kind, metadata.name), or a `kind: List` whose `items` are objects. The result says
whether the file parsed at all and whether every document in it could be identified: the watcher
must not delete anything a file might still hold while it cannot tell what the file holds.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import msgspec
import yaml

from xdsbus.watcher import content_rev

# The kinds the builder understands; a resync announces all of them even when no file holds one, so
# the builder drops what a previous run published and the files no longer hold.
KNOWN_KINDS: frozenset[str] = frozenset(
    {
        "Service",
        "EndpointSlice",
        "Endpoints",
        "Ingress",
        "IngressClass",
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
        "GRPCRoute",
        "ReferenceGrant",
        "Secret",
        "ConfigMap",
        "McpBridge",
        "WasmPlugin",
        "Http2Rpc",
    }
)

# Kinds without a namespace: their key is the bare name. Small on purpose; everything else is namespaced.
CLUSTER_SCOPED_KINDS: frozenset[str] = frozenset(
    {
        "GatewayClass",
        "IngressClass",
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "PersistentVolume",
        "StorageClass",
        "PriorityClass",
        "ValidatingWebhookConfiguration",
        "MutatingWebhookConfiguration",
    }
)

DEFAULT_NAMESPACE = "default"
MANIFEST_SUFFIXES: tuple[str, ...] = (".yaml", ".yml", ".json")


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """Safe YAML loading, with timestamps kept as strings as Kubernetes does (its YAML goes through
    JSON), so a creationTimestamp stays a string and every body stays plain msgpack data."""


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _Loader.construct_yaml_str)


@dataclasses.dataclass(frozen=True, slots=True, order=True)
class ObjectId:
    """Identity of an object within the source: its kind and event key."""

    kind: str
    key: str

    def __str__(self) -> str:
        return f"{self.kind} {self.key}"


@dataclasses.dataclass(frozen=True, slots=True)
class Manifest:
    """One object read from a file, ready to publish."""

    id: ObjectId
    body: dict[str, Any]
    rev: str  # content hash of body, the event's rev
    size: int  # bytes of body encoded as msgpack
    path: str  # the file, relative to the watched directory
    line: int  # 1-based line where the object starts

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclasses.dataclass(frozen=True, slots=True)
class ManifestError:
    """Why (part of) a file was rejected."""

    path: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}" if self.line else f"{self.path}: {self.reason}"


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedFile:
    """What one file holds.

    `parsed` is False when the file as a whole could not be read or parsed: it holds nothing usable.
    `complete` is True when the file parsed and every document was identified (kind and key known);
    only then do `objects` tell everything the file holds."""

    path: str
    objects: tuple[Manifest, ...]
    errors: tuple[ManifestError, ...]
    parsed: bool
    complete: bool


def is_manifest_name(name: str) -> bool:
    """Whether a file name is one the watcher reads (by extension, case-insensitive)."""
    return name.lower().endswith(MANIFEST_SUFFIXES)


def object_key(kind: str, name: str, namespace: str | None) -> str:
    """`namespace/name` for namespaced kinds (namespace defaults to "default"), `name` otherwise."""
    if kind in CLUSTER_SCOPED_KINDS:
        return name
    return f"{namespace or DEFAULT_NAMESPACE}/{name}"


def parse_manifests(path: str, data: bytes) -> ParsedFile:
    """Parse the content of the file at `path` (relative, used in messages) into objects and errors."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return _unparsed(path, line, f"not UTF-8 text: {exc.reason}")
    if path.lower().endswith(".json"):
        return _parse_json(path, text)
    return _parse_yaml(path, text)


def _unparsed(path: str, line: int | None, reason: str) -> ParsedFile:
    return ParsedFile(path, (), (ManifestError(path, line, reason),), parsed=False, complete=False)


def _parse_json(path: str, text: str) -> ParsedFile:
    if not text.strip():
        return ParsedFile(path, (), (), parsed=True, complete=True)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return _unparsed(path, exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
    # JSON keeps no positions once decoded: every object of the file is reported at its first line.
    return _collect(path, [(1, doc, lambda _index: 1)])


def _parse_yaml(path: str, text: str) -> ParsedFile:
    documents: list[tuple[int, Any, Any]] = []
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            doc = loader.construct_document(node)
            if doc is None:  # an empty document (a stray `---`, comments only)
                continue
            documents.append((node.start_mark.line + 1, doc, _item_lines(node)))
    except yaml.YAMLError as exc:
        # A YAML error leaves the whole file unknown: documents after the error may be anything.
        return _unparsed(path, *_yaml_problem(exc))
    finally:
        loader.dispose()
    return _collect(path, documents)


def _yaml_problem(exc: yaml.YAMLError) -> tuple[int | None, str]:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        reason = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        if mark is not None:
            return mark.line + 1, f"invalid YAML: {reason} (column {mark.column + 1})"
        return None, f"invalid YAML: {reason}"
    return None, f"invalid YAML: {exc}"


def _item_lines(node: yaml.Node) -> Any:
    """Line of each element of a List document's `items`, for errors and object positions."""
    lines: list[int] = []
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if key_node.value == "items" and isinstance(value_node, yaml.SequenceNode):
                lines = [item.start_mark.line + 1 for item in value_node.value]
    start = node.start_mark.line + 1
    return lambda index: lines[index] if index < len(lines) else start


def _collect(path: str, documents: list[tuple[int, Any, Any]]) -> ParsedFile:
    objects: list[Manifest] = []
    errors: list[ManifestError] = []
    complete = True
    first_seen: dict[ObjectId, Manifest] = {}

    def add(line: int, doc: Any) -> None:
        nonlocal complete
        result = _to_manifest(path, line, doc)
        if isinstance(result, _Rejected):
            errors.append(result.error)
            # Only an object we could not identify makes the file's content unknown; one we identified
            # but cannot encode is still known to be there.
            complete = complete and result.identified
            return
        earlier = first_seen.get(result.id)
        if earlier is not None:
            errors.append(
                ManifestError(
                    path,
                    line,
                    f"{result.id} is defined twice in this file (first at line {earlier.line}, which wins); "
                    "this definition is ignored",
                )
            )
            return
        first_seen[result.id] = result
        objects.append(result)

    for line, doc, item_line in documents:
        if _is_list(doc):
            items = doc["items"]
            for index, item in enumerate(items):
                if _is_list(item):
                    errors.append(
                        ManifestError(path, item_line(index), "a List inside a List is not supported")
                    )
                    complete = False
                    continue
                add(item_line(index), item)
        else:
            add(line, doc)
    return ParsedFile(path, tuple(objects), tuple(errors), parsed=True, complete=complete)


def _is_list(doc: Any) -> bool:
    """`kind: List` (what kubectl prints) or `kind: <X>List` with items and no name of its own."""
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        return False
    kind = doc.get("kind")
    if kind == "List":
        return True
    metadata = doc.get("metadata")
    has_name = isinstance(metadata, dict) and metadata.get("name")
    return isinstance(kind, str) and kind.endswith("List") and not has_name


@dataclasses.dataclass(frozen=True, slots=True)
class _Rejected:
    error: ManifestError
    identified: bool  # kind and key are known even though the object cannot be used


def _to_manifest(path: str, line: int, doc: Any) -> Manifest | _Rejected:
    """Validate one document and turn it into a Manifest, or say what is wrong with it."""

    def bad(reason: str, identified: bool = False) -> _Rejected:
        return _Rejected(ManifestError(path, line, reason), identified)

    if not isinstance(doc, dict):
        return bad(f"document is not a mapping (it is a {_type_name(doc)})")
    kind = doc.get("kind")
    if not isinstance(kind, str) or not kind:
        return bad("document has no kind")
    if not isinstance(doc.get("apiVersion"), str) or not doc["apiVersion"]:
        return bad(f"{kind} has no apiVersion")
    metadata = doc.get("metadata")
    if not isinstance(metadata, dict):
        return bad(f"{kind} has no metadata")
    name = metadata.get("name")
    if not isinstance(name, str) or not name:
        return bad(f"{kind} has no metadata.name")
    namespace = metadata.get("namespace")
    if namespace is not None and (not isinstance(namespace, str) or not namespace):
        return bad(f"{kind} {name}: metadata.namespace must be a non-empty string")
    # '/' separates namespace and name in the key; Kubernetes forbids it in both anyway.
    if "/" in name or (namespace and "/" in namespace):
        return bad(f"{kind} {name}: '/' is not allowed in metadata.name or metadata.namespace")
    scoped = kind not in CLUSTER_SCOPED_KINDS
    oid = ObjectId(kind, object_key(kind, name, namespace))

    # What the API server would hand a watcher: no status, no managedFields, and the namespace filled
    # in, so the builder sees the same body from a file as from Kubernetes.
    body = {k: v for k, v in doc.items() if k != "status"}
    meta = {k: v for k, v in metadata.items() if k != "managedFields"}
    if scoped and not namespace:
        meta["namespace"] = DEFAULT_NAMESPACE
    body["metadata"] = meta
    try:
        size = len(msgspec.msgpack.encode(body))
        rev = content_rev(body)
    except (TypeError, ValueError, OverflowError) as exc:
        # e.g. a YAML mapping with a non-string key; Kubernetes objects are JSON, so their keys are strings.
        return bad(f"{oid} cannot be encoded: {exc}", identified=True)
    return Manifest(id=oid, body=body, rev=rev, size=size, path=path, line=line)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean"}.get(
        type(value), type(value).__name__
    )
