"""The conformance runner's judging of one round trip (bench/conformance/cases.py): pure functions, fake
responses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from bench.conformance import manifests
from bench.conformance.cases import (
    Case,
    check_redirect,
    evaluate,
    host_header,
    is_core,
    pod_backend,
    prepare,
    weight_problems,
)


@dataclass
class FakeResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def make_case(
    request: dict[str, Any] | None = None, expect: dict[str, Any] | None = None, **gateway: Any
) -> Case:
    return Case.from_entry(
        {
            "test": "T",
            "case_index": 0,
            "case_name": "c",
            "features": ["Gateway", "HTTPRoute"],
            "manifests": ["conformance/base/manifests.yaml"],
            "gateway": {
                "namespace": "ns",
                "name": "gw",
                "listener": None,
                "port": 80,
                "scheme": "http",
                **gateway,
            },
            "request": {
                "scheme": "http",
                "protocol": "HTTP",
                "host": None,
                "path": "/",
                "method": "GET",
                "headers": {},
                "unfollow_redirect": False,
                "server_name": None,
                "echo_set_response_headers": {},
                **(request or {}),
            },
            "expect": {
                "status": [200],
                "backend": "infra-backend-v1",
                "namespace": "gateway-conformance-infra",
                "path": "/",
                "method": "GET",
                **(expect or {}),
            },
        }
    )


def echo(path: str = "/", pod: str = "infra-backend-v1-7c9d5f-1", **extra: Any) -> bytes:
    body = {
        "path": path,
        "host": extra.pop("host", "127.0.0.1"),
        "method": extra.pop("method", "GET"),
        "namespace": extra.pop("namespace", "gateway-conformance-infra"),
        "pod": pod,
        "headers": extra.pop("headers", {}),
    }
    return json.dumps(body).encode()


def test_a_matching_echo_passes() -> None:
    case = make_case()
    assert evaluate(case, prepare(case), FakeResponse(200, [], echo())) is None


def test_the_status_must_be_expected_but_408_and_504_are_one() -> None:
    case = make_case(expect={"status": [504]})
    assert evaluate(case, prepare(case), FakeResponse(408)) is None
    reason = evaluate(case, prepare(case), FakeResponse(503, [], b"no healthy upstream"))
    assert reason is not None and "status 503 not in [504]" in reason and "no healthy upstream" in reason


def test_the_backend_is_a_pod_name_prefix_and_namespace_path_method_exact() -> None:
    case = make_case()
    reason = evaluate(case, prepare(case), FakeResponse(200, [], echo(pod="infra-backend-v2-7c9d5f-1")))
    assert (
        reason is not None and "'infra-backend-v2-7c9d5f-1' does not start with 'infra-backend-v1'" in reason
    )
    reason = evaluate(case, prepare(case), FakeResponse(200, [], echo(path="/x", namespace="other")))
    assert reason is not None and "namespace" in reason and "path '/x' != '/'" in reason
    any_backend = make_case(expect={"backend": ""})
    assert evaluate(any_backend, prepare(any_backend), FakeResponse(200, [], echo(pod="web-x-y"))) is None


def test_backend_fields_are_not_compared_unless_200_or_204() -> None:
    case = make_case(expect={"status": [404], "backend": "", "namespace": ""})
    assert evaluate(case, prepare(case), FakeResponse(404, [], b"not found")) is None


def test_host_only_when_expected() -> None:
    case = make_case(request={"host": "foo.com:8080"}, expect={"host": "foo.com:8080"})
    assert prepare(case).host == "foo.com:8080"
    assert evaluate(case, prepare(case), FakeResponse(200, [], echo(host="foo.com:8080"))) is None
    reason = evaluate(case, prepare(case), FakeResponse(200, [], echo(host="foo.com")))
    assert reason is not None and "host 'foo.com' != 'foo.com:8080'" in reason


def test_request_headers_joined_case_insensitive_and_absent() -> None:
    case = make_case(
        expect={"request_headers": {"x-header-add": "a,b"}, "request_absent_headers": ["X-Header-Remove"]}
    )
    good = echo(headers={"X-Header-Add": ["a", "b"]})
    assert evaluate(case, prepare(case), FakeResponse(200, [], good)) is None
    bad = echo(headers={"X-Header-Add": ["a"], "X-Header-Remove": ["v"]})
    reason = evaluate(case, prepare(case), FakeResponse(200, [], bad))
    assert reason is not None
    assert (
        "request header x-header-add: 'a' != 'a,b'" in reason and "X-Header-Remove should be absent" in reason
    )


def test_response_headers_exact_valid_values_absent_and_whitespace() -> None:
    case = make_case(
        expect={
            "response_headers": {"X-Header-Set": "v"},
            "response_absent_headers": ["X-Remove"],
            "response_valid_header_values": {
                "access-control-allow-methods": ["GET, OPTIONS", "OPTIONS, GET"]
            },
            "ignore_whitespace": True,
        }
    )
    headers = [("x-header-set", "v"), ("Access-Control-Allow-Methods", "OPTIONS,GET")]
    assert evaluate(case, prepare(case), FakeResponse(200, headers, echo())) is None
    reason = evaluate(case, prepare(case), FakeResponse(200, [*headers, ("x-remove", "1")], echo()))
    assert reason is not None and "X-Remove should be absent" in reason


def test_a_gateway_answer_captures_empty_path_and_the_request_method() -> None:
    """A CORS preflight: path and namespace "" mean the gateway, not the echo, answered."""
    case = make_case(
        request={"method": "OPTIONS"},
        expect={"status": [200, 204], "backend": "", "namespace": "", "path": "", "method": "OPTIONS"},
    )
    assert evaluate(case, prepare(case), FakeResponse(204)) is None
    reason = evaluate(case, prepare(case), FakeResponse(200, [], echo(method="OPTIONS")))
    assert reason is not None and "path '/' != ''" in reason


def test_x_echo_set_header_is_always_sent() -> None:
    assert ("X-Echo-Set-Header", "") in prepare(make_case()).headers
    case = make_case(request={"echo_set_response_headers": {"A": "1", "B": "2"}})
    assert ("X-Echo-Set-Header", "A:1,B:2") in prepare(case).headers


def test_uuid_and_request_id_placeholders() -> None:
    ids = iter(["u1", "r1"])
    case = make_case(request={"path": "/retry?uuid={uuid}"}, expect={"path": "/retry?uuid={uuid}"})
    prepared = prepare(case, new_id=lambda: next(ids))
    assert prepared.path == prepared.expected_path == "/retry?uuid=u1"
    case = make_case(
        request={"path": "/mirror", "add_request_id_query_param": "rid"}, expect={"path": "/mirror"}
    )
    prepared = prepare(case, new_id=lambda: "r1")
    assert prepared.path == prepared.expected_path == "/mirror?rid=r1"
    assert prepared.request_id == "r1"


def test_default_host_carries_the_suite_port_unless_default() -> None:
    assert host_header(make_case()) == "127.0.0.1"
    assert host_header(make_case(port=8080)) == "127.0.0.1:8080"
    https = make_case(request={"scheme": "https"}, port=443, scheme="https")
    assert host_header(https) == "127.0.0.1"


def test_redirect_location_defaults() -> None:
    redirect = {"scheme": None, "host": "example.org", "port": None, "path": None}
    ok = check_redirect(redirect, "http://example.org/a", request_scheme="http", request_path="/a?q=1")
    assert ok == []
    assert check_redirect(redirect, "http://example.org:80/a", request_scheme="http", request_path="/a") == []
    problems = check_redirect(redirect, "http://example.org:8080/b", request_scheme="http", request_path="/a")
    assert any("port '8080'" in p for p in problems) and any("path '/b'" in p for p in problems)
    assert check_redirect(redirect, None, request_scheme="http", request_path="/") == [
        "3xx without a Location header"
    ]
    explicit = {"scheme": "https", "host": None, "port": "8443", "path": "/x"}
    assert check_redirect(explicit, "https://any:8443/x", request_scheme="http", request_path="/") == []


def test_redirect_port_of_a_moved_listener_is_mapped_back() -> None:
    redirect = {"scheme": None, "host": "example.org", "port": "8080", "path": None}
    location = "http://example.org:45678/a"
    assert check_redirect(redirect, location, request_scheme="http", request_path="/a") != []
    unmap = {"45678": "8080"}.get
    found = check_redirect(
        redirect, location, request_scheme="http", request_path="/a", unmap_port=lambda p: unmap(p) or p
    )
    assert found == []


def test_redirect_status_checks_location_only() -> None:
    redirect = {"scheme": None, "host": "example.org", "port": None, "path": None}
    case = make_case(request={"unfollow_redirect": True}, expect={"status": [302], "redirect": redirect})
    assert evaluate(case, prepare(case), FakeResponse(302, [("Location", "http://example.org/")])) is None
    reason = evaluate(case, prepare(case), FakeResponse(302, [("location", "https://example.org/")]))
    assert reason is not None and "redirect scheme 'https' != 'http'" in reason


def test_weights_and_pod_backend() -> None:
    assert pod_backend("infra-backend-v1-7c9d5f-1") == "infra-backend-v1"
    assert weight_problems({"a": 70, "b": 30}, {"a": 0.7, "b": 0.3, "c": 0.0}) == []
    assert weight_problems({"a": 50, "b": 50}, {"a": 0.7, "b": 0.3}) != []


def test_core_is_gateway_httproute_referencegrant() -> None:
    assert is_core(["Gateway", "HTTPRoute", "ReferenceGrant"])
    assert not is_core(["Gateway", "HTTPRoute", "HTTPRouteQueryParamMatching"])


# -- manifests ---------------------------------------------------------------------------------------


def test_manifests_are_made_runnable() -> None:
    objects = [
        {"kind": "Namespace", "metadata": {"name": "ns", "labels": {"a": "b"}}},
        {
            "kind": "Gateway",
            "metadata": {"name": "gw", "namespace": "ns"},
            "spec": {"listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]},
        },
        {
            "kind": "HTTPRoute",
            "metadata": {"name": "r", "namespace": "ns"},
            "spec": {
                "parentRefs": [{"name": "gw", "port": 80}],
                "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"port": 80}}]}],
            },
        },
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "web"}}}},
        },
        {
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "ns"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 8080, "targetPort": 3000}]},
        },
        {"kind": "TCPRoute", "metadata": {"name": "t", "namespace": "ns"}},
    ]
    assert manifests.gateway_ports(objects) == {("ns", "gw", 80)}
    pods = manifests.pods_of(objects)
    assert [p.name for p in pods] == ["web-7c9d5f-1", "web-7c9d5f-2"]
    ports = {"web-7c9d5f-1": 1001, "web-7c9d5f-2": 1002}
    out = manifests.runnable(
        manifests.remap_ports(objects, {("ns", "gw", 80): 30080}), pods, lambda p: ports[p.name]
    )
    kinds = [o["kind"] for o in out]
    assert kinds == ["Namespace", "Gateway", "HTTPRoute", "Service", "EndpointSlice", "EndpointSlice"]
    assert out[1]["spec"]["listeners"][0]["port"] == 30080
    assert out[2]["spec"]["parentRefs"][0]["port"] == 30080
    # A redirect's port is what the client is told: unchanged.
    assert out[2]["spec"]["rules"][0]["filters"][0]["requestRedirect"]["port"] == 80
    assert objects[1]["spec"]["listeners"][0]["port"] == 80  # the input is not modified
    slices = out[4:]
    assert {s["ports"][0]["port"] for s in slices} == {1001, 1002}
    assert slices[0]["metadata"]["labels"] == {"kubernetes.io/service-name": "web"}
    assert slices[0]["ports"][0]["name"] == ""
