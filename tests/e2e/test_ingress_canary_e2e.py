"""Canary Ingresses end to end (one Stack for the module, one host per case): by header, header value,
header pattern, cookie and weight, their precedence, and what is reported when a canary cannot apply.

Every host has a normal Ingress sending `/` to echo-a and a canary Ingress sending `/` to echo-b."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import (
    Expect,
    IngressPath,
    count_pods,
    ingress,
    request,
    simple,
    wait_all,
    wait_statuses,
    wait_warning,
)
from xdsbus_dev.harness.stack import Stack, edge_installed, service_manifest

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

N = "nginx.ingress.kubernetes.io/"
H = "higress.io/"
BASE = "echo-a-7c9d5f-1"
CANARY = "echo-b-7c9d5f-1"
# Requests for each weighted split, and bounds that hold but for a 1e-5 chance (about 4.5 standard
# deviations of the binomial around the expected count).
SAMPLES = 200

CASES: dict[str, dict[str, str]] = {
    "header": {N + "canary-by-header": "X-Canary"},
    "value": {H + "canary-by-header": "X-Ver", H + "canary-by-header-value": "v2"},
    "pattern": {N + "canary-by-header": "X-Group", N + "canary-by-header-pattern": "beta"},
    "cookie": {N + "canary-by-cookie": "canary_user"},
    "weight": {N + "canary-weight": "30"},
    "total": {H + "canary-weight": "3", H + "canary-weight-total": "4"},
    "all": {N + "canary-weight": "100"},
    # Both prefixes: nginx's header wins.
    "both": {N + "canary-by-header": "X-N", H + "canary-by-header": "X-H"},
    # A header canary ignores its weight.
    "precedence": {N + "canary-by-header": "X-C", N + "canary-weight": "100"},
    "invalid": {N + "canary-weight": "abc"},
    # The canary route copies the main route's policies (upstream-vhost below) but keeps its own header
    # control.
    "inherit": {N + "canary-by-header": "X-I", H + "request-header-control-add": "X-From-Canary yes"},
}
# Annotations of the main Ingress, per case.
MAIN: dict[str, dict[str, str]] = {
    "inherit": {H + "upstream-vhost": "main.internal", H + "request-header-control-add": "X-From-Main yes"},
}


def _manifests() -> list[dict[str, Any]]:
    out = []
    for case, settings in CASES.items():
        host = f"{case}.canary.example.com"
        out.append(
            simple(f"{case}-main", host, "echo-a", created="2025-01-01T00:00:00Z", **MAIN.get(case, {}))
        )
        out.append(simple(f"{case}-canary", host, "echo-b", **{N + "canary": "true", **settings}))
    # A canary taking all traffic to a Service without endpoints: requests fall back to the main one.
    out.append(simple("fallback-main", "fallback.canary.example.com", "echo-a"))
    out.append(
        simple(
            "fallback-canary",
            "fallback.canary.example.com",
            "echo-none",
            **{N + "canary": "true", N + "canary-weight": "100"},
        )
    )
    out.append(service_manifest("echo-none", 1))
    # A canary whose path no normal Ingress serves.
    out.append(
        ingress(
            "orphan-canary",
            {"header.canary.example.com": [IngressPath("/elsewhere", "echo-b")]},
            annotations={N + "canary": "true", N + "canary-weight": "50"},
        )
    )
    return out


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with Stack(tmp_path_factory.mktemp("canary"), edges=1) as stack:
        stack.write("canary.yaml", _manifests())
        await wait_all(
            stack,
            [Expect(f"{case}.canary.example.com", pod="echo-a") for case in CASES if case != "all"]
            + [
                Expect("all.canary.example.com", pod="echo-b"),
                Expect("fallback.canary.example.com", pod="echo-a"),
                Expect("header.canary.example.com", headers=(("X-Canary", "always"),), pod="echo-b"),
            ],
        )
        yield stack


async def pod(stack: Stack, case: str, headers: dict[str, str] | None = None) -> str:
    response = await request(stack, f"{case}.canary.example.com", "/", headers=headers)
    assert response.status == 200, (case, headers, response.status, response.text[:200])
    return str(response.json()["pod"])


async def test_by_header(stack: Stack) -> None:
    assert await pod(stack, "header") == BASE
    assert await pod(stack, "header", {"X-Canary": "always"}) == CANARY
    for other in ("never", "yes", "Always", "always1"):
        assert await pod(stack, "header", {"X-Canary": other}) == BASE, other


async def test_by_header_value(stack: Stack) -> None:
    assert await pod(stack, "value", {"X-Ver": "v2"}) == CANARY
    assert await pod(stack, "value", {"X-Ver": "always"}) == CANARY
    for other in ("v3", "v2x", ""):
        assert await pod(stack, "value", {"X-Ver": other}) == BASE, other
    assert await pod(stack, "value") == BASE


async def test_by_header_pattern(stack: Stack) -> None:
    # The pattern matches anywhere in the value.
    assert await pod(stack, "pattern", {"X-Group": "beta"}) == CANARY
    assert await pod(stack, "pattern", {"X-Group": "closed-beta-2"}) == CANARY
    assert await pod(stack, "pattern", {"X-Group": "alpha"}) == BASE
    assert await pod(stack, "pattern") == BASE


async def test_by_cookie(stack: Stack) -> None:
    assert await pod(stack, "cookie", {"Cookie": "canary_user=always"}) == CANARY
    assert await pod(stack, "cookie", {"Cookie": "a=1; canary_user=always; b=2"}) == CANARY
    for other in ("canary_user=never", "xcanary_user=always", "a=1"):
        assert await pod(stack, "cookie", {"Cookie": other}) == BASE, other
    assert await pod(stack, "cookie") == BASE


async def test_by_weight(stack: Stack) -> None:
    # 30 of 100.
    counts = await count_pods(stack, "weight.canary.example.com", "/", SAMPLES)
    assert set(counts) <= {BASE, CANARY}
    assert 30 <= counts[CANARY] <= 90, counts
    # 3 of a total of 4: 75%.
    counts = await count_pods(stack, "total.canary.example.com", "/", SAMPLES)
    assert 120 <= counts[CANARY] <= 180, counts
    # All of it.
    assert await count_pods(stack, "all.canary.example.com", "/", 20) == {CANARY: 20}


async def test_nginx_prefix_wins_and_header_beats_weight(stack: Stack) -> None:
    assert await pod(stack, "both", {"X-N": "always"}) == CANARY
    assert await pod(stack, "both", {"X-H": "always"}) == BASE
    assert await count_pods(stack, "precedence.canary.example.com", "/", 20) == {BASE: 20}
    assert await pod(stack, "precedence", {"X-C": "always"}) == CANARY


async def test_a_header_canary_inherits_the_main_route_but_not_its_header_control(stack: Stack) -> None:
    host = "inherit.canary.example.com"
    main = (await request(stack, host, "/x")).json()
    assert (main["pod"], main["host"], main["headers"].get("X-From-Main")) == (BASE, "main.internal", ["yes"])
    assert "X-From-Canary" not in main["headers"]
    canary = (await request(stack, host, "/x", headers={"X-I": "always"})).json()
    assert (canary["pod"], canary["host"]) == (CANARY, "main.internal")
    assert canary["headers"].get("X-From-Canary") == ["yes"]
    assert "X-From-Main" not in canary["headers"]


async def test_a_canary_without_endpoints_falls_back_to_the_main_service(stack: Stack) -> None:
    assert await count_pods(stack, "fallback.canary.example.com", "/", 10) == {BASE: 10}


async def test_an_invalid_weight_is_reported_and_the_main_ingress_serves_everything(stack: Stack) -> None:
    warnings = await wait_warning(stack, "invalid-canary", "canary-weight")
    assert warnings == ['annotation nginx.ingress.kubernetes.io/canary-weight: "abc" is not an integer']
    assert await count_pods(stack, "invalid.canary.example.com", "/", 20) == {BASE: 20}


async def test_a_canary_without_a_main_route_is_reported(stack: Stack) -> None:
    warnings = await wait_warning(stack, "orphan-canary", "no matching non-canary route")
    assert warnings == [
        "host header.canary.example.com: canary has no matching non-canary route for prefix /elsewhere"
    ]
    # Never served as it is: the main Ingress's `/` answers there.
    response = await request(stack, "header.canary.example.com", "/elsewhere")
    assert (response.status, response.json()["pod"]) == (200, BASE)
    statuses = await wait_statuses(stack, [f"{case}-main" for case in CASES])
    assert {case: statuses[f"{case}-main"].warnings for case in CASES} == {case: [] for case in CASES}
