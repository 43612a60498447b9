"""The Gateway API conformance cases as data, and how one round trip is judged: pure functions, no I/O.

The rules are the `semantics` block of expectations.json (extracted from the upstream suite's
`http.CompareRoundTrip`):

- the status must be one of `expect.status`; a 408 or 504 passes when the list holds either;
- on 200/204 only: backend (pod-name prefix, "" matches any), namespace, path (RequestURI with query),
  method exactly against the echo JSON; host only when expected non-empty; request headers after joining
  repeated values with ","; header names case-insensitive; response headers likewise;
- on 3xx only: the Location header against `expect.redirect` (null scheme => the request's scheme, null
  path => the request's path, null port => "" or the scheme's well-known port, null host => unchecked).

A response whose body is not echo JSON (the gateway answered, e.g. a CORS preflight) captures an empty
path, namespace, pod and host, and the request's own method (the suite's round tripper does the same: the
captured request starts as the request made).
"""

from __future__ import annotations

import json
import urllib.parse
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

# Features the upstream suite calls Core (SupportGateway, SupportHTTPRoute, SupportReferenceGrant); every
# other feature is Extended (or experimental).
CORE_FEATURES = frozenset({"Gateway", "HTTPRoute", "ReferenceGrant"})

TIMEOUT_STATUSES = frozenset({408, 504})
DEFAULT_PORTS = {"http": "80", "https": "443"}
SWITCHING_PROTOCOLS = 101
# What HTTPRouteBackendProtocolWebSocket sends over its websocket: a text and a binary message, each to be
# echoed back unchanged.
WEBSOCKET_MESSAGES: tuple[str | bytes, ...] = ("Websocket Support!", bytes([1, 2, 3, 4, 5, 6, 7]))


class ResponseLike(Protocol):
    """What a client returns: xdsbus_dev.harness.http.Response or the runner's HTTP/2 response."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Case:
    """One expectation entry of expectations.json."""

    test: str
    index: int
    name: str
    features: tuple[str, ...]
    provisional: bool
    manifests: tuple[str, ...]
    gateway: Mapping[str, Any]
    request: Mapping[str, Any]
    expect: Mapping[str, Any]
    notes: str = ""

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Case:
        return cls(
            test=entry["test"],
            index=int(entry["case_index"]),
            name=entry["case_name"],
            features=tuple(entry["features"]),
            provisional=bool(entry.get("provisional")),
            manifests=tuple(entry["manifests"]),
            gateway=entry["gateway"],
            request=entry["request"],
            expect=entry["expect"],
            notes=str(entry.get("notes") or ""),
        )

    @property
    def protocol(self) -> str:
        return str(self.request["protocol"])

    @property
    def scheme(self) -> str:
        return str(self.request["scheme"])

    @property
    def websocket(self) -> bool:
        """A case that dials a websocket and exchanges WEBSOCKET_MESSAGES instead of making one round trip:
        the one expecting 101 Switching Protocols."""
        return SWITCHING_PROTOCOLS in self.expect["status"]

    @property
    def websocket_origin(self) -> str:
        """The Origin header of the suite's websocket dial (`ws://gateway/<test name>`)."""
        return f"ws://gateway/{self.test}"

    @property
    def gateway_port(self) -> int:
        """The port the suite sends to (before the runner maps it to a free one)."""
        return int(self.gateway["port"])


def is_core(features: Sequence[str]) -> bool:
    return set(features) <= CORE_FEATURES


@dataclass(frozen=True)
class Prepared:
    """One attempt's request: the `{uuid}` and request-id placeholders filled in."""

    method: str
    path: str
    host: str
    headers: list[tuple[str, str]]
    expected_path: str
    request_id: str = ""


def host_header(case: Case, gateway_host: str = "127.0.0.1") -> str:
    """The Host header: the entry's host, else the gateway address with the suite's port when it is not the
    scheme's default. The suite's ports (80, 443, 8080...) are used, not the free ports the runner maps them
    to: host ports are ignored for route matching, and this keeps what the backend sees as upstream."""
    if case.request.get("host"):
        return str(case.request["host"])
    port = str(case.gateway_port)
    return gateway_host if port == DEFAULT_PORTS.get(case.scheme) else f"{gateway_host}:{port}"


def _with_query_param(path: str, name: str, value: str) -> str:
    return f"{path}{'&' if '?' in path else '?'}{name}={value}"


def prepare(case: Case, gateway_host: str = "127.0.0.1", new_id: Callable[[], str] | None = None) -> Prepared:
    """The request of one attempt. `{uuid}` becomes a fresh UUID (the retry tests count failures per uuid);
    `add_request_id_query_param` appends a fresh id (the mirror tests find it in the mirror's log)."""
    make_id = new_id or (lambda: str(uuid.uuid4()))
    path = str(case.request["path"])
    expected = str(case.expect.get("path", path))
    if "{uuid}" in path or "{uuid}" in expected:
        value = make_id()
        path = path.replace("{uuid}", value)
        expected = expected.replace("{uuid}", value)
    request_id = ""
    if param := case.request.get("add_request_id_query_param"):
        request_id = make_id()
        path = _with_query_param(path, str(param), request_id)
        if expected:
            expected = _with_query_param(expected, str(param), request_id)
    headers = [(str(k), str(v)) for k, v in (case.request.get("headers") or {}).items()]
    echo_set = case.request.get("echo_set_response_headers") or {}
    # The suite always sends it, empty when the case sets nothing.
    headers.append(("X-Echo-Set-Header", ",".join(f"{k}:{v}" for k, v in echo_set.items())))
    return Prepared(
        method=str(case.request.get("method") or "GET"),
        path=path,
        host=host_header(case, gateway_host),
        headers=headers,
        expected_path=expected,
        request_id=request_id,
    )


# -- judging one response -----------------------------------------------------------------------------


@dataclass
class Captured:
    """What the backend saw, from the echo JSON (empty fields when the body is not echo JSON)."""

    path: str = ""
    host: str = ""
    method: str = ""
    namespace: str = ""
    pod: str = ""
    headers: dict[str, list[str]] = field(default_factory=dict)
    is_echo: bool = False


def capture(body: bytes, request_method: str) -> Captured:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict) or "path" not in data:
        return Captured(method=request_method)
    headers = data.get("headers") or {}
    return Captured(
        path=str(data.get("path", "")),
        host=str(data.get("host", "")),
        method=str(data.get("method", "")),
        namespace=str(data.get("namespace", "")),
        pod=str(data.get("pod", "")),
        headers={
            str(k): [str(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in headers.items()
        },
        is_echo=True,
    )


def header_value(headers: Mapping[str, Sequence[str]] | Sequence[tuple[str, str]], name: str) -> str | None:
    """Every value of `name` (case-insensitive) joined with ","; None when absent."""
    lower = name.lower()
    if isinstance(headers, Mapping):
        values = [v for k, vs in headers.items() if k.lower() == lower for v in vs]
        found = any(k.lower() == lower for k in headers)
    else:
        values = [v for k, v in headers if k.lower() == lower]
        found = bool(values)
    return ",".join(values) if found else None


def status_ok(expected: Sequence[int], actual: int) -> bool:
    if actual in expected:
        return True
    return actual in TIMEOUT_STATUSES and bool(TIMEOUT_STATUSES & set(expected))


def _strip_ws(value: str) -> str:
    return "".join(value.split())


def check_backend(expect: Mapping[str, Any], prepared: Prepared, captured: Captured) -> list[str]:
    """Mismatches of what the backend saw (only meaningful on 200/204)."""
    problems = []
    backend = str(expect.get("backend") or "")
    if not captured.pod.startswith(backend):
        problems.append(f"pod {captured.pod!r} does not start with {backend!r}")
    namespace = str(expect.get("namespace") or "")
    if captured.namespace != namespace:
        problems.append(f"namespace {captured.namespace!r} != {namespace!r}")
    if captured.path != prepared.expected_path:
        problems.append(f"path {captured.path!r} != {prepared.expected_path!r}")
    method = str(expect.get("method") or "GET")
    if captured.method != method:
        problems.append(f"method {captured.method!r} != {method!r}")
    host = str(expect.get("host") or "")
    if host and captured.host != host:
        problems.append(f"host {captured.host!r} != {host!r}")
    for name, want in (expect.get("request_headers") or {}).items():
        got = header_value(captured.headers, name)
        if got != want:
            problems.append(f"request header {name}: {got!r} != {want!r}")
    for name in expect.get("request_absent_headers") or ():
        if (got := header_value(captured.headers, name)) is not None:
            problems.append(f"request header {name} should be absent, got {got!r}")
    return problems


def check_response_headers(expect: Mapping[str, Any], headers: Sequence[tuple[str, str]]) -> list[str]:
    problems = []
    strip = bool(expect.get("ignore_whitespace"))
    for name, want in (expect.get("response_headers") or {}).items():
        got = header_value(headers, name)
        if got is None or (_strip_ws(got) != _strip_ws(want) if strip else got != want):
            problems.append(f"response header {name}: {got!r} != {want!r}")
    for name, valid in (expect.get("response_valid_header_values") or {}).items():
        got = header_value(headers, name)
        options = [_strip_ws(v) for v in valid] if strip else list(valid)
        if got is None or (_strip_ws(got) if strip else got) not in options:
            problems.append(f"response header {name}: {got!r} not one of {list(valid)!r}")
    for name in expect.get("response_absent_headers") or ():
        if (got := header_value(headers, name)) is not None:
            problems.append(f"response header {name} should be absent, got {got!r}")
    return problems


def check_redirect(
    redirect: Mapping[str, Any],
    location: str | None,
    *,
    request_scheme: str,
    request_path: str,
    unmap_port: Callable[[str], str] = lambda port: port,
) -> list[str]:
    """Mismatches of a 3xx's Location. `unmap_port` turns a runner-mapped gateway port back into the suite's
    (a redirect that keeps the listener's port carries the free port the Gateway was moved to)."""
    if not location:
        return ["3xx without a Location header"]
    parsed = urllib.parse.urlsplit(location)
    scheme = parsed.scheme or request_scheme
    port = unmap_port(str(parsed.port)) if parsed.port is not None else ""
    problems = []
    want_scheme = redirect.get("scheme") or request_scheme
    if scheme != want_scheme:
        problems.append(f"redirect scheme {scheme!r} != {want_scheme!r}")
    if redirect.get("host") and (parsed.hostname or "") != redirect["host"]:
        problems.append(f"redirect host {parsed.hostname!r} != {redirect['host']!r}")
    want_port = redirect.get("port")
    if want_port is None:
        allowed = {"", DEFAULT_PORTS.get(want_scheme, "")}
        if port not in allowed:
            problems.append(f"redirect port {port!r} not one of {sorted(allowed)!r}")
    elif port != str(want_port):
        problems.append(f"redirect port {port!r} != {want_port!r}")
    want_path = redirect.get("path") or urllib.parse.urlsplit(request_path).path
    if (parsed.path or "/") != want_path:
        problems.append(f"redirect path {parsed.path!r} != {want_path!r}")
    return problems


def evaluate(
    case: Case,
    prepared: Prepared,
    response: ResponseLike,
    *,
    unmap_port: Callable[[str], str] = lambda port: port,
) -> str | None:
    """None when the round trip passes; otherwise why not (expected vs actual)."""
    expect = case.expect
    statuses = [int(s) for s in expect["status"]]
    if not status_ok(statuses, response.status):
        snippet = response.body[:200].decode(errors="replace")
        return f"status {response.status} not in {statuses} (body {snippet!r})"
    problems: list[str] = []
    if response.status in (200, 204):
        captured = capture(response.body, prepared.method)
        problems += check_backend(expect, prepared, captured)
        problems += check_response_headers(expect, response.headers)
    elif 300 <= response.status < 400 and expect.get("redirect"):
        location = next((v for k, v in response.headers if k.lower() == "location"), None)
        problems += check_redirect(
            expect["redirect"],
            location,
            request_scheme=case.scheme,
            request_path=prepared.path,
            unmap_port=unmap_port,
        )
    return "; ".join(problems) or None


def websocket_echo_problem(sent: str | bytes, received: object) -> str | None:
    """None when a websocket message came back unchanged: the same data, text for text, binary for binary
    (a text reply is a str, a binary one bytes)."""
    if type(received) is type(sent) and received == sent:
        return None
    return f"websocket: sent {sent!r}, got {received!r}"


def weight_problems(
    counts: Mapping[str, int], weights: Mapping[str, float], tolerance: float = 0.05
) -> list[str]:
    """HTTPRouteWeight: each backend's share within `tolerance` (absolute) of its weight."""
    total = sum(counts.values())
    if not total:
        return ["no responses counted"]
    problems = []
    for backend in sorted(set(weights) | set(counts)):
        share = counts.get(backend, 0) / total
        want = weights.get(backend, 0.0)
        if abs(share - want) > tolerance:
            problems.append(f"{backend}: share {share:.3f} vs weight {want}")
    return problems


def pod_backend(pod: str) -> str:
    """The deployment of a pod: its name minus the last two dash segments (as the weight test does)."""
    parts = pod.split("-")
    return "-".join(parts[:-2]) if len(parts) > 2 else pod
