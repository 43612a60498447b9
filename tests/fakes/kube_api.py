"""A protocol-faithful fake Kubernetes API server for tests: aiohttp.web in the test's own event loop.

The wire protocol follows docs/registries.md §4 (what kubernetes_asyncio 36.1.0 sends and
expects), so the real client library and our watchers talk to it unchanged. The driver (the test) mutates
the store directly through synchronous methods, which notify open watches exactly like HTTP writes do.

Fidelity choices, and why:

* One global, monotonically increasing resourceVersion (decimal strings), like etcd's revision. Objects
  are stored per group/resource, independent of version, as etcd does; a CRD served at several versions
  (ReferenceGrant v1 and v1beta1) shows the same objects under each, only ``apiVersion`` is rewritten (no
  conversion webhooks).
* Every resource keeps a bounded event history, like the apiserver's watch cache. A watch from an RV older
  than what the history still holds gets **200 with one ERROR frame** (Status 410 "Expired") and the stream
  ends, which is what the watch cache does; ``compact()`` forces that horizon to "now".
* Watch from RV unset or "0" starts with synthetic ADDED events for the current state, then live events.
  Label/field selectors apply to watches with the watch cache's transitions: an object that starts matching
  arrives as ADDED, one that stops matching as DELETED. DELETED carries the last state with the deletion RV.
* Bookmarks only with ``allowWatchBookmarks``, periodically when the watch is idle (``bookmark_interval``)
  and on demand (``send_bookmarks()``); their RV never runs ahead of an event still queued for that watch.
* Lists are sorted by namespace/name (etcd key order), carry the current RV, and page with ``limit`` and an
  opaque ``continue`` token over a consistent snapshot; the token expires (410) after ``compact()``. Items
  of built-in kinds have no ``kind``/``apiVersion`` in lists (true of the real server); custom resources
  keep them.
* HTTP writes follow the apiserver's rules: POST 201 (409 AlreadyExists), PUT with a stale RV 409, CRD PUT
  without an RV 422, writes through the main resource cannot change ``.status`` of a resource with a status
  subresource, writes to ``/status`` change only ``.status``, ``metadata.generation`` moves only when
  something outside metadata/status changes, and a write that changes nothing is a no-op (no new RV, no
  event), so "write status on every event" loops behave as they would in a cluster. PATCH: JSON merge patch,
  strategic merge patch treated as a merge patch (415 for custom resources, as the real server answers),
  JSON patch (a dict body is a 400, the well-known CustomObjectsApi pitfall). Server-side apply: 415.
* Booleans in query strings are parsed like Go's ``strconv.ParseBool`` (the client sends ``True``).
* ``install_crd`` also maintains a CustomResourceDefinition object (apiextensions.k8s.io/v1), so watchers
  that watch CRDs to notice Gateway API installation see it; it is read-only over HTTP.

Not faithful (on purpose, to keep the fake small): no admission (objects may be created in namespaces that
do not exist), no finalizers or graceful deletion, no managedFields/server-side apply, no dryRun, no
defaulting or schema validation, no gzip, no protobuf, no RBAC (only an optional bearer token), list
``resourceVersion``/``resourceVersionMatch`` are ignored (lists always serve the latest state), and a watch
from a future RV simply waits instead of failing with "Too large resource version".

Driver methods must be called from the event loop thread that runs the server.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import json
import logging
import re
import secrets
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self, TypeVar

import msgspec
import yaml
from aiohttp import web

JSON = dict[str, Any]
_T = TypeVar("_T")

log = logging.getLogger(__name__)

_encode = msgspec.json.Encoder().encode
# Real clusters start far from zero; starting high keeps tests from depending on small literal RVs.
_FIRST_RV = 1000


class ResourceDef(NamedTuple):
    """A served resource: ``install_crd(*DEF)`` and ``install_crd(DEF)`` both work."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    status: bool = True
    generation: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


# Built-in resources, always served. `generation` is false where the real apiserver never sets it.
SERVICES = ResourceDef("", "v1", "services", "Service", generation=False)
ENDPOINTS = ResourceDef("", "v1", "endpoints", "Endpoints", status=False, generation=False)
SECRETS = ResourceDef("", "v1", "secrets", "Secret", status=False, generation=False)
CONFIGMAPS = ResourceDef("", "v1", "configmaps", "ConfigMap", status=False, generation=False)
NAMESPACES = ResourceDef("", "v1", "namespaces", "Namespace", namespaced=False, generation=False)
ENDPOINTSLICES = ResourceDef("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice", status=False)
INGRESSES = ResourceDef("networking.k8s.io", "v1", "ingresses", "Ingress")
INGRESSCLASSES = ResourceDef("networking.k8s.io", "v1", "ingressclasses", "IngressClass", False, False)
CUSTOMRESOURCEDEFINITIONS = ResourceDef(
    "apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", namespaced=False
)
BUILTIN_RESOURCES: tuple[ResourceDef, ...] = (
    SERVICES,
    ENDPOINTS,
    SECRETS,
    CONFIGMAPS,
    NAMESPACES,
    ENDPOINTSLICES,
    INGRESSES,
    INGRESSCLASSES,
    CUSTOMRESOURCEDEFINITIONS,
)

# Custom resources the fake knows by name but does not serve until `install_crd`.
GATEWAY_GROUP = "gateway.networking.k8s.io"
GATEWAYCLASSES = ResourceDef(GATEWAY_GROUP, "v1", "gatewayclasses", "GatewayClass", namespaced=False)
GATEWAYS = ResourceDef(GATEWAY_GROUP, "v1", "gateways", "Gateway")
HTTPROUTES = ResourceDef(GATEWAY_GROUP, "v1", "httproutes", "HTTPRoute")
GRPCROUTES = ResourceDef(GATEWAY_GROUP, "v1", "grpcroutes", "GRPCRoute")
REFERENCEGRANTS = ResourceDef(GATEWAY_GROUP, "v1", "referencegrants", "ReferenceGrant", status=False)
REFERENCEGRANTS_V1BETA1 = ResourceDef(
    GATEWAY_GROUP, "v1beta1", "referencegrants", "ReferenceGrant", status=False
)
TCPROUTES = ResourceDef(GATEWAY_GROUP, "v1alpha2", "tcproutes", "TCPRoute")
TLSROUTES = ResourceDef(GATEWAY_GROUP, "v1alpha2", "tlsroutes", "TLSRoute")
UDPROUTES = ResourceDef(GATEWAY_GROUP, "v1alpha2", "udproutes", "UDPRoute")
GATEWAY_API_CRDS = (
    GATEWAYCLASSES,
    GATEWAYS,
    HTTPROUTES,
    GRPCROUTES,
    REFERENCEGRANTS,
    REFERENCEGRANTS_V1BETA1,
)
GATEWAY_API_EXPERIMENTAL_CRDS = (TCPROUTES, TLSROUTES, UDPROUTES)
MCPBRIDGES = ResourceDef("networking.higress.io", "v1", "mcpbridges", "McpBridge")
HTTP2RPCS = ResourceDef("networking.higress.io", "v1", "http2rpcs", "Http2Rpc")
WASMPLUGINS = ResourceDef("extensions.higress.io", "v1alpha1", "wasmplugins", "WasmPlugin")
HIGRESS_CRDS = (MCPBRIDGES, HTTP2RPCS, WASMPLUGINS)
KNOWN_CRDS = GATEWAY_API_CRDS + GATEWAY_API_EXPERIMENTAL_CRDS + HIGRESS_CRDS

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_NOT_FOUND_RESOURCE = "the server could not find the requested resource"
_NOT_ALLOWED = "the server does not allow this method on the requested resource"
_NS_MISMATCH = "the namespace of the provided object does not match the namespace sent on the request"
_UNKNOWN_FORMAT = "the body of the request was in an unknown format - accepted media types include: "
_OPEN_SCHEMA = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
_ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


class KubeApiError(Exception):
    """An apiserver error: answered over HTTP as a Status body, raised as-is by driver methods."""

    def __init__(self, code: int, message: str, reason: str = "", details: JSON | None = None) -> None:
        super().__init__(f"{code} {reason or _REASONS.get(code, 'Unknown')}: {message}")
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def status(self) -> JSON:
        """The Kubernetes Status object for this error."""
        body: JSON = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


@dataclass(frozen=True)
class StatusWrite:
    """One successful write to a ``/status`` subresource over HTTP (no-op writes included)."""

    api_version: str
    kind: str
    namespace: str
    name: str
    method: str
    status: Any
    resource_version: str
    changed: bool
    body: Any = None


@dataclass(frozen=True)
class RequestRecord:
    """One HTTP request as the fake saw it (before failure injection and auth)."""

    method: str
    path: str
    query: dict[str, str]

    @property
    def watch(self) -> bool:
        return _parse_bool(self.query.get("watch"))


@dataclass
class _FailureRule:
    remaining: int
    code: int
    match: str | None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _clone(obj: _T) -> _T:
    # Hand-rolled because copy.deepcopy and a JSON round trip are ~3x slower, which matters when a benchmark
    # loads 60k objects through the driver. Tuples become lists, as on the wire.
    kind = type(obj)
    if kind is dict:
        return {k: _clone(v) for k, v in obj.items()}  # type: ignore[attr-defined,return-value]
    if kind is list or kind is tuple:
        return [_clone(v) for v in obj]  # type: ignore[attr-defined,return-value]
    return obj


def _parse_bool(value: str | None) -> bool:
    # Go's strconv.ParseBool spellings; kubernetes_asyncio sends Python's "True".
    if value is None:
        return False
    if value in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if value in ("", "0", "f", "F", "false", "FALSE", "False"):
        return False
    raise KubeApiError(400, f'invalid boolean value "{value}"')


def _dumps(body: Any) -> bytes:
    # msgspec rather than json.dumps: a benchmark's lists of 60k objects cost this process ~0.6 CPU-s
    # with json.dumps, on the machine whose CPU the services under test share (bench cold_load). UTF-8 is
    # written as it is, as the API server does.
    return _encode(body)


def _json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(body=_dumps(body), status=status, content_type="application/json")


def _error_response(err: KubeApiError) -> web.Response:
    resp = _json_response(err.status(), err.code)
    if err.code in (429, 503):
        resp.headers["Retry-After"] = "1"
    return resp


def _frame(etype: str, obj: JSON) -> bytes:
    # JSON escapes newlines inside strings, so one event is exactly one line.
    return _encode({"type": etype, "object": obj}) + b"\n"


def _with_rv(obj: JSON, rv: int) -> JSON:
    return {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(rv)}}


def _version_rank(version: str) -> tuple[int, int, int]:
    # Kubernetes version priority: GA before beta before alpha, higher numbers first.
    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    stage = {None: 0, "beta": 1, "alpha": 2}[m.group(2)]
    return (stage, -int(m.group(1)), -int(m.group(3) or 0))


# ---------------------------------------------------------------------------------------------- selectors

_KEY = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_VALUE = r"[A-Za-z0-9._-]*"
_SET_RE = re.compile(rf"^({_KEY})\s+(in|notin)\s*\(([^()]*)\)$")
_EQ_RE = re.compile(rf"^({_KEY})\s*(==|!=|=)\s*({_VALUE})$")
_NOT_RE = re.compile(rf"^!\s*({_KEY})$")
_EXISTS_RE = re.compile(rf"^({_KEY})$")


class _Requirement(NamedTuple):
    key: str
    op: str  # "in", "notin", "exists", "!"
    values: frozenset[str]


def _split_terms(selector: str) -> list[str]:
    terms: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            terms.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    terms.append("".join(cur).strip())
    return [t for t in terms if t]


def parse_label_selector(selector: str) -> list[_Requirement]:
    """Parse a label selector (equality- and set-based) the way the apiserver accepts it."""
    reqs: list[_Requirement] = []
    for term in _split_terms(selector):
        if m := _SET_RE.match(term):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(_Requirement(m.group(1), m.group(2), values))
        elif m := _EQ_RE.match(term):
            reqs.append(
                _Requirement(m.group(1), "notin" if m.group(2) == "!=" else "in", frozenset([m.group(3)]))
            )
        elif m := _NOT_RE.match(term):
            reqs.append(_Requirement(m.group(1), "!", frozenset()))
        elif m := _EXISTS_RE.match(term):
            reqs.append(_Requirement(m.group(1), "exists", frozenset()))
        else:
            raise KubeApiError(400, f"unable to parse requirement: {term!r}")
    return reqs


def _labels_match(reqs: list[_Requirement], labels: dict[str, str]) -> bool:
    for key, op, values in reqs:
        present = key in labels
        if op == "exists":
            ok = present
        elif op == "!":
            ok = not present
        elif op == "in":
            ok = present and labels[key] in values
        else:  # notin: like the apiserver, objects without the label match
            ok = not present or labels[key] not in values
        if not ok:
            return False
    return True


class _Filter:
    """Namespace scope plus label and field selectors, applied to lists and watches alike."""

    __slots__ = ("fields", "labels", "namespace")

    def __init__(self, namespace: str | None, label_selector: str, field_selector: str) -> None:
        self.namespace = namespace
        self.labels = parse_label_selector(label_selector) if label_selector else []
        self.fields: list[tuple[str, bool, str]] = []
        for term in _split_terms(field_selector or ""):
            m = re.fullmatch(r"([A-Za-z.]+)\s*(==|!=|=)\s*(.*)", term)
            if not m:
                raise KubeApiError(400, f"invalid field selector: {term!r}")
            if m.group(1) not in ("metadata.name", "metadata.namespace"):
                raise KubeApiError(400, f"field label not supported: {m.group(1)}")
            self.fields.append((m.group(1).removeprefix("metadata."), m.group(2) != "!=", m.group(3)))

    def matches(self, obj: JSON) -> bool:
        meta = obj["metadata"]
        if self.namespace is not None and meta.get("namespace", "") != self.namespace:
            return False
        for attr, equal, value in self.fields:
            if (meta.get(attr, "") == value) != equal:
                return False
        return not self.labels or _labels_match(self.labels, meta.get("labels") or {})


# ------------------------------------------------------------------------------------------------ patches


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (also what the fake does for strategic merge patches)."""
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise KubeApiError(422, f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _resolve(doc: Any, parts: list[str], path: str) -> Any:
    for part in parts:
        if isinstance(doc, dict) and part in doc:
            doc = doc[part]
        elif isinstance(doc, list) and part.isdigit() and int(part) < len(doc):
            doc = doc[int(part)]
        else:
            raise KubeApiError(422, f"doc is missing path: {path!r}")
    return doc


def json_patch(doc: Any, ops: list[Any]) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test) on a copy of `doc`."""
    doc = _clone(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise KubeApiError(422, f"invalid JSON patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        parts = _pointer(path)
        if kind in ("move", "copy"):
            value = _clone(_resolve(doc, _pointer(op.get("from", "")), op.get("from", "")))
            if kind == "move":
                doc = json_patch(doc, [{"op": "remove", "path": op["from"]}])
            doc = json_patch(doc, [{"op": "add", "path": path, "value": value}])
            continue
        if kind == "test":
            if _resolve(doc, parts, path) != op.get("value"):
                raise KubeApiError(422, f"testing value {path!r} failed")
            continue
        if not parts:
            if kind == "remove":
                raise KubeApiError(422, "cannot remove the whole document")
            doc = _clone(op.get("value"))
            continue
        parent = _resolve(doc, parts[:-1], path)
        last = parts[-1]
        if kind == "add":
            if isinstance(parent, list):
                index = len(parent) if last == "-" else int(last) if last.isdigit() else -1
                if not 0 <= index <= len(parent):
                    raise KubeApiError(422, f"invalid array index in {path!r}")
                parent.insert(index, _clone(op.get("value")))
            elif isinstance(parent, dict):
                parent[last] = _clone(op.get("value"))
            else:
                raise KubeApiError(422, f"doc is missing path: {path!r}")
        elif kind in ("remove", "replace"):
            _resolve(parent, [last], path)  # must exist for both
            if isinstance(parent, list):
                if kind == "remove":
                    del parent[int(last)]
                else:
                    parent[int(last)] = _clone(op.get("value"))
            elif kind == "remove":
                del parent[last]
            else:
                parent[last] = _clone(op.get("value"))
        else:
            raise KubeApiError(422, f"unexpected JSON patch op {kind!r}")
    return doc


# -------------------------------------------------------------------------------------------- the store


class _Event:
    """One change as the watch cache keeps it: the new object and, for MODIFIED/DELETED, the previous one."""

    __slots__ = ("_frames", "obj", "prev", "rv", "type")

    def __init__(self, rv: int, etype: str, obj: JSON, prev: JSON | None) -> None:
        self.rv = rv
        self.type = etype
        self.obj = obj
        self.prev = prev
        self._frames: dict[tuple[str, str], bytes] = {}

    def frame_for(self, flt: _Filter, api_version: str) -> bytes | None:
        """The frame a watch with this filter sees, or None (watch-cache transition rules)."""
        cur_ok = self.type != "DELETED" and flt.matches(self.obj)
        old_ok = self.prev is not None and flt.matches(self.prev)
        if cur_ok:
            etype = "MODIFIED" if old_ok else "ADDED"
        elif old_ok:
            etype = "DELETED"
        else:
            return None
        cache_key = (etype, api_version)
        frame = self._frames.get(cache_key)
        if frame is None:
            obj = self.obj
            if etype == "DELETED" and self.type != "DELETED":
                assert self.prev is not None
                obj = _with_rv(self.prev, self.rv)  # left the selector: last matching state, event's RV
            if obj["apiVersion"] != api_version:
                obj = {**obj, "apiVersion": api_version}
            frame = self._frames[cache_key] = _frame(etype, obj)
        return frame


class _Watch:
    __slots__ = (
        "abort",
        "api_version",
        "bookmarks",
        "filter",
        "kind",
        "queue",
        "resource",
        "streaming",
        "transport",
    )

    def __init__(self, resource: _Resource, rdef: ResourceDef, flt: _Filter, bookmarks: bool) -> None:
        self.resource = resource
        self.api_version = rdef.api_version
        self.kind = rdef.kind
        self.filter = flt
        self.bookmarks = bookmarks
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.abort = False
        # Registered (events queue up) before the response headers go out; counted as open only after.
        self.streaming = False

    def offer(self, ev: _Event) -> None:
        frame = ev.frame_for(self.filter, self.api_version)
        if frame is not None:
            self.queue.put_nowait(frame)

    def bookmark(self, rv: int, initial_end: bool = False) -> bytes:
        meta: JSON = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return _frame("BOOKMARK", {"kind": self.kind, "apiVersion": self.api_version, "metadata": meta})

    def close(self, abort: bool) -> None:
        self.abort = abort
        self.queue.put_nowait(None)
        if abort and self.transport is not None:
            # A hard cut: the client sees the chunked body end mid-stream, like a lost connection.
            self.transport.abort()


class _Resource:
    """One group/resource: its objects (version-agnostic, as in etcd) and a bounded event history."""

    def __init__(self, rdef: ResourceDef, crd: bool, floor: int) -> None:
        self.group = rdef.group
        self.plural = rdef.plural
        self.kind = rdef.kind
        self.namespaced = rdef.namespaced
        self.has_status = rdef.status
        self.generation = rdef.generation
        self.crd = crd
        self.versions: dict[str, ResourceDef] = {rdef.version: rdef}
        self.objects: dict[tuple[str, str], JSON] = {}
        self.history: deque[_Event] = deque()
        # Watches from an RV below this get 410: events up to it are gone.
        self.compacted_rv = floor
        self.watches: set[_Watch] = set()
        self._sorted: list[tuple[str, str]] | None = None

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def not_found(self, name: str) -> KubeApiError:
        details: JSON = {"name": name}
        if self.group:
            details["group"] = self.group
        details["kind"] = self.plural
        return KubeApiError(404, f'{self.qualified} "{name}" not found', details=details)

    def sorted_keys(self, namespace: str | None = None) -> list[tuple[str, str]]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        if namespace is None:
            return self._sorted
        lo = bisect.bisect_left(self._sorted, (namespace, ""))
        hi = bisect.bisect_left(self._sorted, (namespace + "\x00", ""))
        return self._sorted[lo:hi]

    def iter_matching(self, flt: _Filter) -> Iterator[JSON]:
        for key in self.sorted_keys(flt.namespace):
            obj = self.objects[key]
            if flt.matches(obj):
                yield obj

    def put(self, key: tuple[str, str], obj: JSON | None) -> None:
        if obj is None:
            del self.objects[key]
            self._sorted = None
        else:
            if key not in self.objects:
                self._sorted = None
            self.objects[key] = obj

    def record(self, ev: _Event, limit: int) -> None:
        self.history.append(ev)
        while len(self.history) > limit:
            self.compacted_rv = self.history.popleft().rv
        for w in self.watches:
            w.offer(ev)

    def events_after(self, rv: int) -> list[_Event]:
        out: list[_Event] = []
        for ev in reversed(self.history):
            if ev.rv <= rv:
                break
            out.append(ev)
        out.reverse()
        return out


@dataclass
class _Snapshot:
    rv: int
    items: list[JSON]
    created: float = field(default_factory=time.monotonic)


def _spec_part(obj: JSON) -> JSON:
    return {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata", "status")}


def _split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version


# --------------------------------------------------------------------------------------------- the fake


class FakeKubeApi:
    """An in-process Kubernetes apiserver speaking the list/watch/write protocol over HTTP.

    Use ``async with FakeKubeApi() as kube:`` or ``await start()``/``await stop()``; ``stop()`` keeps the
    state and the port, so ``start()`` again simulates an apiserver restart.
    """

    def __init__(
        self,
        *,
        token: str | None = None,
        history: int = 10_000,
        bookmark_interval: float = 1.0,
        watch_timeout: float | None = None,
        port: int = 0,
        seed_namespaces: bool = True,
    ) -> None:
        self.token = token
        self.history = history
        self.bookmark_interval = bookmark_interval
        # Server-side cap for watches without timeoutSeconds (the real one is 30–60 min); None = no cap.
        self.watch_timeout = watch_timeout
        self.port = port
        self.status_writes: list[StatusWrite] = []
        self.requests: deque[RequestRecord] = deque(maxlen=10_000)
        # When set, every API request fails with this HTTP code (a toggle for outages).
        self.failing: int | None = None
        self._failures: list[_FailureRule] = []
        self._rv = _FIRST_RV
        self._resources: dict[tuple[str, str], _Resource] = {}
        self._served: dict[tuple[str, str, str], tuple[_Resource, ResourceDef]] = {}
        self._kinds: dict[tuple[str, str, str], ResourceDef] = {}
        self._watches: set[_Watch] = set()
        self._snapshots: OrderedDict[str, _Snapshot] = OrderedDict()
        self._runner: web.AppRunner | None = None
        for rdef in KNOWN_CRDS:
            self._kinds[(rdef.group, rdef.version, rdef.kind)] = rdef
        for rdef in BUILTIN_RESOURCES:
            self._add_served(rdef, crd=False)
        if seed_namespaces:
            for ns in ("default", "kube-system", "kube-public", "kube-node-lease"):
                self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        """Serve on 127.0.0.1 (a free port the first time, the same port on a restart)."""
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client that hangs up cancels its watch handler, which unregisters it.
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._runner = runner
        if not self.port:
            self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Close every watch cleanly and stop serving; the state is kept."""
        for w in list(self._watches):
            w.close(abort=False)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:41234``."""
        if not self.port:
            raise RuntimeError("FakeKubeApi is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def resource_version(self) -> str:
        """The current global resourceVersion."""
        return str(self._rv)

    def write_kubeconfig(self, path: str | Path, namespace: str | None = None) -> Path:
        """Write a kubeconfig pointing at this fake (with the bearer token if one is set)."""
        context: JSON = {"cluster": "fake", "user": "fake"}
        if namespace:
            context["namespace"] = namespace
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {"token": self.token} if self.token else {}}],
            "contexts": [{"name": "fake", "context": context}],
            "current-context": "fake",
            "preferences": {},
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    # ------------------------------------------------------------------------------- fault injection

    def compact(self) -> str:
        """Forget all history: afterwards a watch from any older RV, or an old continue token, gets 410."""
        for res in self._resources.values():
            res.history.clear()
            res.compacted_rv = self._rv
        self._snapshots.clear()
        return str(self._rv)

    def drop_watches(self, graceful: bool = False) -> int:
        """Cut every open watch: by default abruptly (a lost connection), else as a clean end of stream."""
        watches = list(self._watches)
        for w in watches:
            w.close(abort=not graceful)
        return len(watches)

    def fail_next(self, n: int = 1, status: int = 500, *, match: str | None = None) -> None:
        """Make the next `n` API requests (whose path and query contain `match`, if given) fail with
        `status`."""
        self._failures.append(_FailureRule(n, status, match))

    def clear_failures(self) -> None:
        """Forget the failures `fail_next` asked for and has not injected yet."""
        self._failures.clear()

    def send_bookmarks(self) -> int:
        """Send a BOOKMARK now on every watch that allowed bookmarks; returns how many got one."""
        count = 0
        for w in self._watches:
            if w.bookmarks:
                # The RV is taken now: every event up to it is already queued ahead of this frame.
                w.queue.put_nowait(w.bookmark(self._rv))
                count += 1
        return count

    def open_watches(self, plural: str | None = None) -> int:
        """How many watch streams are open, headers sent (for one resource plural if given)."""
        return sum(
            1 for w in self._watches if w.streaming and (plural is None or w.resource.plural == plural)
        )

    # ------------------------------------------------------------------------------------ resources

    def install_crd(
        self,
        group: str | ResourceDef,
        version: str = "",
        plural: str = "",
        kind: str = "",
        namespaced: bool = True,
        status: bool = True,
        generation: bool = True,
    ) -> ResourceDef:
        """Serve a custom resource (one version of it); also creates/updates its CRD object."""
        if isinstance(group, ResourceDef):
            rdef = group
        else:
            if not (group and version and plural and kind):
                raise ValueError("install_crd needs group, version, plural and kind")
            rdef = ResourceDef(group, version, plural, kind, namespaced, status, generation)
        existing = self._resources.get((rdef.group, rdef.plural))
        if existing is not None and not existing.crd:
            raise ValueError(f"{existing.qualified} is a built-in resource")
        res = self._add_served(rdef, crd=True)
        self._sync_crd_object(res)
        return rdef

    def uninstall_crd(
        self,
        group: str | ResourceDef,
        version: str = "",
        plural: str = "",
        *_ignored: Any,
        **_ignored_kw: Any,
    ) -> None:
        """Stop serving a custom resource version (all versions if `version` is empty).

        When no version is left, its objects vanish and its watches end, as when a CRD is deleted.
        Extra arguments (kind, namespaced, ...) are accepted so the install call can be mirrored.
        """
        if isinstance(group, ResourceDef):
            group_name, version, plural = group.group, group.version, group.plural
        else:
            group_name = group
        res = self._resources.get((group_name, plural))
        if res is None or not res.crd:
            return
        for v in [v for v in res.versions if not version or v == version]:
            rdef = res.versions.pop(v)
            self._served.pop((group_name, v, plural), None)
            if rdef not in KNOWN_CRDS:
                self._kinds.pop((group_name, v, rdef.kind), None)
            for w in [w for w in res.watches if w.api_version == rdef.api_version]:
                w.close(abort=False)
        if not res.versions:
            del self._resources[(group_name, plural)]
        self._sync_crd_object(res)

    def _add_served(self, rdef: ResourceDef, crd: bool) -> _Resource:
        res = self._resources.get((rdef.group, rdef.plural))
        if res is None:
            # A (re)installed resource starts with an empty watch cache at the current RV.
            res = self._resources[(rdef.group, rdef.plural)] = _Resource(rdef, crd, self._rv)
        res.versions[rdef.version] = rdef
        self._served[(rdef.group, rdef.version, rdef.plural)] = (res, rdef)
        self._kinds[(rdef.group, rdef.version, rdef.kind)] = rdef
        return res

    def _sync_crd_object(self, res: _Resource) -> None:
        crds = self._resources[("apiextensions.k8s.io", "customresourcedefinitions")]
        name = res.qualified
        old = crds.objects.get(("", name))
        if not res.versions or (res.group, res.plural) not in self._resources:
            if old is not None:
                self._delete(crds, "", name)
            return
        ordered = sorted(res.versions, key=_version_rank)
        names = {
            "plural": res.plural,
            "singular": res.kind.lower(),
            "kind": res.kind,
            "listKind": f"{res.kind}List",
        }
        body: JSON = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {
                "group": res.group,
                "names": names,
                "scope": "Namespaced" if res.namespaced else "Cluster",
                "versions": [
                    {
                        "name": v,
                        "served": True,
                        "storage": v == ordered[0],
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                        **({"subresources": {"status": {}}} if res.versions[v].status else {}),
                    }
                    for v in ordered
                ],
            },
            "status": {
                "acceptedNames": names,
                "conditions": [
                    {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": ""},
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "message": "",
                    },
                ],
                "storedVersions": [ordered[0]],
            },
        }
        if old is None:
            self._create(crds, CUSTOMRESOURCEDEFINITIONS, body, "", client=False)
        else:
            self._update(crds, CUSTOMRESOURCEDEFINITIONS, body, "", name, client=False)

    # ------------------------------------------------------------------------------------ driver API

    def _lookup(self, api_version: str, kind: str) -> tuple[_Resource, ResourceDef]:
        group, version = _split_api_version(api_version)
        rdef = self._kinds.get((group, version, kind))
        if rdef is None:
            raise KubeApiError(404, f'no matches for kind "{kind}" in version "{api_version}"')
        served = self._served.get((group, version, rdef.plural))
        if served is None:
            raise KubeApiError(404, f"{_NOT_FOUND_RESOURCE} ({rdef.plural}.{group} is not installed)")
        return served

    def _driver_target(self, obj: JSON) -> tuple[_Resource, ResourceDef, str]:
        res, rdef = self._lookup(obj.get("apiVersion", ""), obj.get("kind", ""))
        if res.plural == "customresourcedefinitions":
            raise ValueError("use install_crd/uninstall_crd for CustomResourceDefinitions")
        namespace = ((obj.get("metadata") or {}).get("namespace") or "default") if res.namespaced else ""
        return res, rdef, namespace

    def create(self, obj: JSON) -> JSON:
        """Create an object as given (status, creationTimestamp kept); KubeApiError 409 if it exists."""
        res, rdef, namespace = self._driver_target(obj)
        return _clone(self._create(res, rdef, _clone(obj), namespace, client=False))

    def update(self, obj: JSON) -> JSON:
        """Replace an object unconditionally (no RV check); without a ``status`` key the old status stays."""
        res, rdef, namespace = self._driver_target(obj)
        name = (obj.get("metadata") or {}).get("name", "")
        return _clone(self._update(res, rdef, _clone(obj), namespace, name, client=False))

    def apply(self, obj: JSON) -> JSON:
        """Create or update (driver convenience)."""
        res, _, namespace = self._driver_target(obj)
        if (namespace, (obj.get("metadata") or {}).get("name", "")) in res.objects:
            return self.update(obj)
        return self.create(obj)

    def set_status(self, api_version: str, kind: str, namespace: str | None, name: str, status: Any) -> JSON:
        """Replace only ``.status`` (as some other controller would); not recorded in `status_writes`."""
        res, rdef = self._lookup(api_version, kind)
        ns = (namespace or "default") if res.namespaced else ""
        old = res.objects.get((ns, name))
        if old is None:
            raise res.not_found(name)
        new = {k: v for k, v in old.items() if k != "status"}
        new["status"] = _clone(status)
        return _clone(self._update(res, rdef, new, ns, name, client=False))

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON:
        """Delete an object (watchers get DELETED); raises KubeApiError 404 if absent."""
        res, _ = self._lookup(api_version, kind)
        ns = (namespace or "default") if res.namespaced else ""
        return _clone(self._delete(res, ns, name))

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> JSON | None:
        """A copy of the stored object, or None."""
        res, rdef = self._lookup(api_version, kind)
        ns = (namespace or "default") if res.namespaced else ""
        obj = res.objects.get((ns, name))
        return None if obj is None else _clone(self._present(res, rdef, obj))

    def objects(
        self, api_version: str | None = None, kind: str | None = None, namespace: str | None = None
    ) -> list[JSON]:
        """Copies of stored objects, filtered by apiVersion and/or kind and/or namespace, in key order."""
        out: list[JSON] = []
        for res in self._resources.values():
            if namespace is not None and not res.namespaced:
                continue
            for rdef in res.versions.values():
                if api_version is not None and rdef.api_version != api_version:
                    continue
                if kind is not None and rdef.kind != kind:
                    continue
                flt = _Filter(namespace, "", "")
                out.extend(_clone(self._present(res, rdef, o)) for o in res.iter_matching(flt))
                break  # one version is enough: objects are shared between versions
        return out

    # --------------------------------------------------------------------------------- store writes

    def _next_rv(self) -> int:
        self._rv += 1
        return self._rv

    def _create(self, res: _Resource, rdef: ResourceDef, body: JSON, namespace: str, *, client: bool) -> JSON:
        meta = dict(body.get("metadata") or {})
        name = meta.get("name") or ""
        if not name:
            prefix = meta.get("generateName") or ""
            if not prefix:
                raise KubeApiError(422, "name or generateName is required", details={"kind": res.kind})
            name = prefix + "".join(secrets.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
        if (namespace, name) in res.objects:
            details: JSON = {"name": name, "kind": res.plural}
            if res.group:
                details["group"] = res.group
            raise KubeApiError(409, f'{res.qualified} "{name}" already exists', "AlreadyExists", details)
        created = meta.get("creationTimestamp") if not client else None
        rv = self._next_rv()
        new_meta: JSON = {"name": name}
        if res.namespaced:
            new_meta["namespace"] = namespace
        new_meta["uid"] = str(uuid.uuid4())
        new_meta["resourceVersion"] = str(rv)
        if res.generation:
            new_meta["generation"] = 1
        new_meta["creationTimestamp"] = created or _now()
        for key, value in meta.items():
            if key not in new_meta and key not in ("selfLink", "deletionTimestamp", "generation"):
                new_meta[key] = value
        if res.plural == "namespaces":
            # Since 1.21 the apiserver labels every namespace with its own name.
            new_meta["labels"] = {**(new_meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
        obj: JSON = {"apiVersion": rdef.api_version, "kind": res.kind, "metadata": new_meta}
        for key, value in body.items():
            if key not in obj:
                obj[key] = value
        if client and res.has_status:
            # Status is not writable through the main resource; the strategies reset it on create.
            obj.pop("status", None)
        if res.plural == "namespaces" and "phase" not in (obj.get("status") or {}):
            obj["status"] = {**(obj.get("status") or {}), "phase": "Active"}
        res.put((namespace, name), obj)
        res.record(_Event(rv, "ADDED", obj, None), self.history)
        return obj

    def _update(
        self,
        res: _Resource,
        rdef: ResourceDef,
        body: JSON,
        namespace: str,
        name: str,
        *,
        client: bool,
        subresource: str | None = None,
        require_rv: bool = True,
    ) -> JSON:
        old = res.objects.get((namespace, name))
        if old is None:
            raise res.not_found(name)
        meta = body.get("metadata") or {}
        if meta.get("name", name) != name:
            raise KubeApiError(
                400,
                f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})",
            )
        old_meta = old["metadata"]
        if client:
            given_rv = meta.get("resourceVersion")
            if given_rv:
                if given_rv != old_meta["resourceVersion"]:
                    details: JSON = {"name": name, "kind": res.plural}
                    if res.group:
                        details["group"] = res.group
                    raise KubeApiError(
                        409,
                        f'Operation cannot be fulfilled on {res.qualified} "{name}": the object has been '
                        "modified; please apply your changes to the latest version and try again",
                        "Conflict",
                        details,
                    )
            elif res.crd and require_rv:
                raise KubeApiError(
                    422,
                    f'{res.kind}.{res.group} "{name}" is invalid: metadata.resourceVersion: Invalid value: '
                    "0x0: must be specified for an update",
                )
        if subresource == "status":
            new: JSON = {k: v for k, v in old.items() if k != "status"}
            if "status" in body:
                new["status"] = body["status"]
        else:
            new_meta = dict(old_meta)
            for key in ("labels", "annotations", "finalizers", "ownerReferences"):
                if key in meta:
                    new_meta[key] = meta[key]
                else:
                    new_meta.pop(key, None)
            if not client and meta.get("creationTimestamp"):
                new_meta["creationTimestamp"] = meta["creationTimestamp"]
            if res.plural == "namespaces":
                new_meta["labels"] = {**(new_meta.get("labels") or {}), "kubernetes.io/metadata.name": name}
            new = {"apiVersion": old["apiVersion"], "kind": res.kind, "metadata": new_meta}
            for key, value in body.items():
                if key not in new and key != "status":
                    new[key] = value
            keep_old_status = (client and res.has_status) or (not client and "status" not in body)
            status = old.get("status") if keep_old_status else body.get("status")
            if (keep_old_status and "status" in old) or (not keep_old_status and "status" in body):
                new["status"] = status
        if new == old:
            # The apiserver skips writes that change nothing: same RV, no watch event.
            return old
        rv = self._next_rv()
        new_meta = dict(new["metadata"])
        new_meta["resourceVersion"] = str(rv)
        if res.generation and _spec_part(new) != _spec_part(old):
            new_meta["generation"] = int(old_meta.get("generation") or 0) + 1
        new["metadata"] = new_meta
        res.put((namespace, name), new)
        res.record(_Event(rv, "MODIFIED", new, old), self.history)
        return new

    def _delete(self, res: _Resource, namespace: str, name: str, preconditions: JSON | None = None) -> JSON:
        old = res.objects.get((namespace, name))
        if old is None:
            raise res.not_found(name)
        pre = preconditions or {}
        if pre.get("resourceVersion") and pre["resourceVersion"] != old["metadata"]["resourceVersion"]:
            raise KubeApiError(
                409,
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, "
                f"ResourceVersion in object meta: {old['metadata']['resourceVersion']}",
                "Conflict",
            )
        if pre.get("uid") and pre["uid"] != old["metadata"]["uid"]:
            raise KubeApiError(
                409,
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: "
                f"{old['metadata']['uid']}",
                "Conflict",
            )
        rv = self._next_rv()
        last = _with_rv(old, rv)
        res.put((namespace, name), None)
        res.record(_Event(rv, "DELETED", last, old), self.history)
        return last

    def _present(self, res: _Resource, rdef: ResourceDef, obj: JSON, in_list: bool = False) -> JSON:
        if in_list and not res.crd:
            return {k: v for k, v in obj.items() if k != "apiVersion" and k != "kind"}
        if obj["apiVersion"] != rdef.api_version:
            return {**obj, "apiVersion": rdef.api_version}
        return obj

    # ------------------------------------------------------------------------------------------ HTTP

    def _take_failure(self, path: str) -> int | None:
        if self.failing:
            return self.failing
        for rule in self._failures:
            if rule.match is None or rule.match in path:
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._failures.remove(rule)
                return rule.code
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(RequestRecord(request.method, request.path, dict(request.query)))
        if request.path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        code = self._take_failure(request.path_qs)
        if code:
            return _error_response(KubeApiError(code, f"injected failure ({code})"))
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return _error_response(KubeApiError(401, "Unauthorized"))
        try:
            return await self._route(request)
        except KubeApiError as err:
            return _error_response(err)
        except Exception as exc:  # a bug in the fake must surface as a 500, not a hung client
            log.exception("fake kube-apiserver failed on %s %s", request.method, request.path_qs)
            return _error_response(KubeApiError(500, f"fake apiserver error: {exc!r}"))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        method = request.method
        if method == "GET":
            if parts == ["version"]:
                return _json_response(self._version())
            if parts == ["api"]:
                return _json_response(
                    {
                        "kind": "APIVersions",
                        "versions": ["v1"],
                        "serverAddressByClientCIDRs": [
                            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"127.0.0.1:{self.port}"}
                        ],
                    }
                )
            if parts == ["apis"]:
                return _json_response(
                    {"kind": "APIGroupList", "apiVersion": "v1", "groups": list(self._groups().values())}
                )
            if len(parts) == 2 and parts[0] == "apis":
                group_info = self._groups().get(parts[1])
                if group_info is None:
                    raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
                return _json_response({"kind": "APIGroup", "apiVersion": "v1", **group_info})
        if len(parts) >= 2 and parts[0] == "api" and parts[1] == "v1":
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        if not rest:
            if method != "GET":
                raise KubeApiError(405, _NOT_ALLOWED)
            return _json_response(self._resource_list(group, version))
        namespace: str | None = None
        if (
            rest[0] == "namespaces"
            and len(rest) >= 3
            and not (group == "" and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        plural, name, sub = (
            rest[0],
            (rest[1] if len(rest) > 1 else None),
            (rest[2] if len(rest) > 2 else None),
        )
        served = self._served.get((group, version, plural))
        if served is None:
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        res, rdef = served
        if namespace is not None and not res.namespaced:
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        if res.namespaced and namespace is None and name is not None:
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        if sub is not None and not (sub == "status" and res.has_status):
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        ns = namespace or ""
        if name is None:
            if method == "GET":
                flt = _Filter(
                    namespace, request.query.get("labelSelector", ""), request.query.get("fieldSelector", "")
                )
                if _parse_bool(request.query.get("watch")):
                    return await self._serve_watch(request, res, rdef, flt)
                return _json_response(self._list(res, rdef, flt, request.query))
            if method == "POST":
                if res.namespaced and namespace is None:
                    raise KubeApiError(405, _NOT_ALLOWED)
                self._check_writable(res)
                body = await self._read_body(request, dict)
                body_ns = (body.get("metadata") or {}).get("namespace")
                if res.namespaced and body_ns and body_ns != ns:
                    raise KubeApiError(
                        400,
                        _NS_MISMATCH,
                    )
                self._check_kind(body, rdef)
                return _json_response(
                    self._present(res, rdef, self._create(res, rdef, body, ns, client=True)), 201
                )
            raise KubeApiError(405, _NOT_ALLOWED)
        if method == "GET":
            obj = res.objects.get((ns, name))
            if obj is None:
                raise res.not_found(name)
            return _json_response(self._present(res, rdef, obj))
        if method == "PUT":
            self._check_writable(res)
            body = await self._read_body(request, dict)
            self._check_kind(body, rdef)
            old = res.objects.get((ns, name))
            new = self._update(res, rdef, body, ns, name, client=True, subresource=sub)
            if sub == "status":
                self._record_status_write(res, rdef, "PUT", new, new is not old, body)
            return _json_response(self._present(res, rdef, new))
        if method == "PATCH":
            self._check_writable(res)
            new = await self._patch(request, res, rdef, ns, name, sub)
            return _json_response(self._present(res, rdef, new))
        if method == "DELETE" and sub is None:
            self._check_writable(res)
            raw = await request.read()
            options = json.loads(raw) if raw.strip() else {}
            preconditions = options.get("preconditions") if isinstance(options, dict) else None
            return _json_response(self._present(res, rdef, self._delete(res, ns, name, preconditions)))
        raise KubeApiError(405, _NOT_ALLOWED)

    def _check_writable(self, res: _Resource) -> None:
        if res.plural == "customresourcedefinitions":
            raise KubeApiError(405, "the fake serves CustomResourceDefinitions read-only; use install_crd")

    @staticmethod
    def _check_kind(body: JSON, rdef: ResourceDef) -> None:
        kind = body.get("kind")
        if kind and kind != rdef.kind:
            raise KubeApiError(
                400, f"the kind in the body ({kind}) does not match the resource ({rdef.kind})"
            )

    @staticmethod
    async def _read_body(request: web.Request, expected: type) -> Any:
        try:
            body = json.loads(await request.read())
        except ValueError as exc:
            raise KubeApiError(400, f"invalid JSON body: {exc}") from None
        if not isinstance(body, expected):
            raise KubeApiError(400, f"the body must be a JSON {expected.__name__}")
        return body

    async def _patch(
        self, request: web.Request, res: _Resource, rdef: ResourceDef, ns: str, name: str, sub: str | None
    ) -> JSON:
        ctype = request.content_type
        try:
            patch = json.loads(await request.read())
        except ValueError as exc:
            raise KubeApiError(400, f"invalid JSON patch body: {exc}") from None
        old = res.objects.get((ns, name))
        if old is None:
            raise res.not_found(name)
        current = self._present(res, rdef, old)
        accepted = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
        if ctype == "application/json-patch+json":
            if not isinstance(patch, list):
                raise KubeApiError(400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
            patched = json_patch(current, patch)
        elif ctype == "application/merge-patch+json" or (
            ctype == "application/strategic-merge-patch+json" and not res.crd
        ):
            if not isinstance(patch, dict):
                raise KubeApiError(400, "a merge patch must be a JSON object")
            patched = merge_patch(current, patch)
        elif ctype == "application/apply-patch+yaml":
            raise KubeApiError(415, "server-side apply is not implemented by the fake apiserver")
        else:
            if not res.crd:
                accepted += ", application/strategic-merge-patch+json"
            raise KubeApiError(
                415,
                _UNKNOWN_FORMAT + accepted,
            )
        if not isinstance(patched, dict):
            raise KubeApiError(422, "the patched object is not a JSON object")
        new = self._update(res, rdef, patched, ns, name, client=True, subresource=sub, require_rv=False)
        if sub == "status":
            self._record_status_write(res, rdef, "PATCH", new, new is not old, patch)
        return new

    def _record_status_write(
        self, res: _Resource, rdef: ResourceDef, method: str, new: JSON, changed: bool, body: Any
    ) -> None:
        meta = new["metadata"]
        self.status_writes.append(
            StatusWrite(
                api_version=rdef.api_version,
                kind=res.kind,
                namespace=meta.get("namespace", ""),
                name=meta["name"],
                method=method,
                status=_clone(new.get("status")),
                resource_version=meta["resourceVersion"],
                changed=changed,
                body=_clone(body),
            )
        )

    # ---------------------------------------------------------------------------------- list & watch

    def _list(self, res: _Resource, rdef: ResourceDef, flt: _Filter, query: Any) -> JSON:
        try:
            limit = int(query.get("limit") or 0)
        except ValueError:
            raise KubeApiError(400, f"invalid limit {query.get('limit')!r}") from None
        token = query.get("continue") or ""
        offset = 0
        if token:
            snap_id, offset = self._decode_continue(token)
            snap = self._snapshots.get(snap_id)
            if snap is None:
                raise KubeApiError(
                    410,
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter.",
                )
            self._snapshots.move_to_end(snap_id)
            items, rv = snap.items, snap.rv
        else:
            items, rv = list(res.iter_matching(flt)), self._rv
        meta: JSON = {"resourceVersion": str(rv)}
        end = len(items)
        if limit > 0 and offset + limit < len(items):
            end = offset + limit
            if not token:
                snap_id = uuid.uuid4().hex
                self._snapshots[snap_id] = _Snapshot(rv, items)
                while len(self._snapshots) > 64:
                    self._snapshots.popitem(last=False)
            last = items[end - 1]["metadata"]
            start_key = f"{last.get('namespace', '')}/{last['name']}\x00"
            meta["continue"] = self._encode_continue(snap_id, end, rv, start_key)
            if not flt.labels and not flt.fields:
                meta["remainingItemCount"] = len(items) - end
        page = [self._present(res, rdef, o, in_list=True) for o in items[offset:end]]
        return {"kind": f"{rdef.kind}List", "apiVersion": rdef.api_version, "metadata": meta, "items": page}

    @staticmethod
    def _encode_continue(snap_id: str, offset: int, rv: int, start: str) -> str:
        # Shaped like the real token (base64 JSON with v/rv/start); id/offset locate the snapshot.
        raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start, "id": snap_id, "offset": offset})
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @staticmethod
    def _decode_continue(token: str) -> tuple[str, int]:
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            return str(data["id"]), int(data["offset"])
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise KubeApiError(400, f"continue key is not valid: {token!r}") from None

    async def _serve_watch(
        self, request: web.Request, res: _Resource, rdef: ResourceDef, flt: _Filter
    ) -> web.StreamResponse:
        query = request.query
        timeout: float | None = self.watch_timeout
        if query.get("timeoutSeconds"):
            try:
                timeout = float(int(query["timeoutSeconds"]))
            except ValueError:
                raise KubeApiError(400, f"invalid timeoutSeconds {query['timeoutSeconds']!r}") from None
        bookmarks = _parse_bool(query.get("allowWatchBookmarks"))
        send_initial = _parse_bool(query.get("sendInitialEvents"))
        if send_initial and not bookmarks:
            raise KubeApiError(
                422, "allowWatchBookmarks: Forbidden: sendInitialEvents requires allowWatchBookmarks"
            )
        if send_initial and query.get("resourceVersionMatch") != "NotOlderThan":
            raise KubeApiError(
                422,
                "resourceVersionMatch: Forbidden: sendInitialEvents requires resourceVersionMatch="
                "NotOlderThan",
            )
        w = _Watch(res, rdef, flt, bookmarks)
        rv_param = query.get("resourceVersion", "")
        # Everything up to registering the watch is synchronous, so no event can slip between the
        # initial frames and the live queue.
        initial: list[bytes] = []
        if rv_param in ("", "0") or send_initial:
            for obj in res.iter_matching(flt):
                initial.append(_frame("ADDED", self._present(res, rdef, obj)))
            if send_initial:
                initial.append(w.bookmark(self._rv, initial_end=True))
        else:
            try:
                since = int(rv_param)
            except ValueError:
                raise KubeApiError(400, f"invalid resource version {rv_param!r}") from None
            if since < res.compacted_rv:
                # What the watch cache does: 200, one ERROR frame with a 410 Status, end of stream.
                err = KubeApiError(410, f"too old resource version: {since} ({res.compacted_rv + 1})")
                return web.Response(body=_frame("ERROR", err.status()), content_type="application/json")
            for ev in res.events_after(since):
                frame = ev.frame_for(flt, rdef.api_version)
                if frame is not None:
                    initial.append(frame)
        res.watches.add(w)
        self._watches.add(w)
        resp = web.StreamResponse(
            headers={"Content-Type": "application/json", "Cache-Control": "no-cache, private"}
        )
        resp.enable_chunked_encoding()
        try:
            await resp.prepare(request)
            w.transport = request.transport
            w.streaming = True
            if w.abort and w.transport is not None:
                w.transport.abort()
            if initial:
                await resp.write(b"".join(initial))
            await self._pump(w, resp, timeout)
            if not w.abort:
                await resp.write_eof()
        except ConnectionError:
            pass  # the client went away or drop_watches() cut it
        finally:
            res.watches.discard(w)
            self._watches.discard(w)
        return resp

    async def _pump(self, w: _Watch, resp: web.StreamResponse, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        next_bookmark = loop.time() + self.bookmark_interval if w.bookmarks else None
        while True:
            wakeups = [t for t in (deadline, next_bookmark) if t is not None]
            wait = max(0.0, min(wakeups) - loop.time()) if wakeups else None
            try:
                first = await asyncio.wait_for(w.queue.get(), wait)
            except TimeoutError:
                now = loop.time()
                if deadline is not None and now >= deadline:
                    return
                if next_bookmark is not None and now >= next_bookmark:
                    next_bookmark = now + self.bookmark_interval
                    if w.queue.empty():
                        # Nothing queued for this watch, so it has seen every change up to the current RV.
                        await resp.write(w.bookmark(self._rv))
                continue
            batch: list[bytes] = []
            item: bytes | None = first
            while item is not None:
                batch.append(item)
                if w.queue.empty() or len(batch) >= 1000:
                    break
                item = w.queue.get_nowait()
            if batch:
                await resp.write(b"".join(batch))
            if item is None:
                return

    # ------------------------------------------------------------------------------------ discovery

    @staticmethod
    def _version() -> JSON:
        return {
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.0-xdsbus-fake",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.4",
            "compiler": "gc",
            "platform": "linux/amd64",
        }

    def _groups(self) -> dict[str, JSON]:
        versions: dict[str, set[str]] = {}
        for group, version, _ in self._served:
            if group:
                versions.setdefault(group, set()).add(version)
        out: dict[str, JSON] = {}
        for group in sorted(versions):
            ordered = sorted(versions[group], key=_version_rank)
            entries = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
            out[group] = {"name": group, "versions": entries, "preferredVersion": entries[0]}
        return out

    def _resource_list(self, group: str, version: str) -> JSON:
        resources: list[JSON] = []
        for (g, v, plural), (res, rdef) in sorted(self._served.items()):
            if (g, v) != (group, version):
                continue
            resources.append(
                {
                    "name": plural,
                    "singularName": rdef.kind.lower(),
                    "namespaced": res.namespaced,
                    "kind": rdef.kind,
                    "verbs": [
                        "create",
                        "delete",
                        "deletecollection",
                        "get",
                        "list",
                        "patch",
                        "update",
                        "watch",
                    ],
                }
            )
            if res.has_status:
                resources.append(
                    {
                        "name": f"{plural}/status",
                        "singularName": "",
                        "namespaced": res.namespaced,
                        "kind": rdef.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        if not resources:
            raise KubeApiError(404, _NOT_FOUND_RESOURCE, details={})
        group_version = f"{group}/{version}" if group else version
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": group_version,
            "resources": resources,
        }
