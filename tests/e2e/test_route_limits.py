"""Through a real Envoy (one Stack for the module): `higress.io/route-limit-rpm` answers 429 once the
route's bucket is empty while another host is not limited, and an Ingress naming an Http2Rpc is never
served as plain HTTP on stock Envoy: its routes answer 503 and both objects say why (docs/higress.md
§1.14, §4). Also Higress's e2e case httproute-exact-domain-fallback: an exact host falls back to its
wildcard host's routes (§0.1)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import (
    Expect,
    IngressPath,
    ingress,
    request,
    simple,
    wait_all,
    wait_warning,
)
from xdsbus import status_store
from xdsbus.contract.status import Verdict
from xdsbus_dev.harness.stack import NAMESPACE, Stack, edge_installed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

H = "higress.io/"
# Two tokens, refilled once a minute: the third request within the test is over the limit.
LIMITED = simple(
    "limited",
    "limited.example.com",
    "echo-a",
    **{H + "route-limit-rpm": "2", H + "route-limit-burst-multiplier": "1"},
)
FREE = simple("free", "free.example.com", "echo-a")
RPC = ingress(
    "rpc",
    {"rpc.example.com": [IngressPath("/", "echo-a")]},
    annotations={H + "rpc-destination-name": "demo-rpc"},
)
WILDCARD = simple("wildcard-ingress", "*.foo.example.com", "echo-a")
EXACT = ingress("exact-ingress", {"www.foo.example.com": [IngressPath("/bar", "echo-b", "Exact")]})
HTTP2RPC = {
    "apiVersion": "networking.higress.io/v1",
    "kind": "Http2Rpc",
    "metadata": {"name": "demo-rpc", "namespace": NAMESPACE},
    "spec": {
        "dubbo": {
            "service": "com.example.DemoService",
            "version": "1.0.0",
            "methods": [{"serviceMethod": "sayHello", "httpPath": "/hello", "httpMethods": ["GET"]}],
        }
    },
}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with Stack(tmp_path_factory.mktemp("limits"), edges=1, backends=("echo-a", "echo-b")) as stack:
        stack.write("limits.yaml", [FREE, RPC, HTTP2RPC, WILDCARD, EXACT])
        await wait_all(
            stack,
            [
                Expect("free.example.com", pod="echo-a"),
                Expect("rpc.example.com", status=503),
                Expect("www.foo.example.com", "/bar", pod="echo-b"),
            ],
        )
        yield stack


async def test_route_limit_answers_429_once_the_bucket_is_empty(stack: Stack) -> None:
    stack.write("limited.yaml", [LIMITED])

    async def served() -> int | None:
        # The first 200 is the limited route's first token: the configuration has arrived.
        status = (await request(stack, "limited.example.com")).status
        return status if status in (200, 429) else None

    assert await stack.wait(served, timeout=15.0, what="the limited host served") == 200
    statuses = [(await request(stack, "limited.example.com")).status for _ in range(5)]
    # One more token at most, then the bucket is empty (a refill, once a minute, could add two).
    assert statuses[0] == 200 and 429 in statuses, statuses
    limited = await request(stack, "limited.example.com")
    assert limited.status == 429
    assert limited.text == "local_rate_limited"
    assert limited.header("x-local-rate-limit") == "true"
    # The limit is the route's: another host is served as often as asked.
    assert [(await request(stack, "free.example.com")).status for _ in range(10)] == [200] * 10


async def test_an_http2rpc_route_is_not_served_as_plain_http_on_stock_envoy(stack: Stack) -> None:
    response = await request(stack, "rpc.example.com", "/hello")
    assert response.status == 503
    assert "--dataplane higress" in response.text
    assert "pod" not in response.text
    await wait_warning(stack, "rpc", "rpc-destination-name", "unsupported on this data plane", "answer 503")
    async with stack.bus() as bus:
        statuses = await status_store.read_all(bus)
    (rpc,) = [s for s in statuses if s.kind == "Http2Rpc" and s.key == f"{NAMESPACE}/demo-rpc"]
    assert rpc.state is Verdict.REJECTED
    assert "needs Higress's Envoy build; run the builder with --dataplane higress" in rpc.reason


async def test_an_exact_host_falls_back_to_its_wildcard_hosts_routes(stack: Stack) -> None:
    assert (await request(stack, "www.foo.example.com", "/bar")).json()["pod"].startswith("echo-b")
    # Not one of www's own routes: the `*.foo.example.com` Ingress answers, as in Higress.
    assert (await request(stack, "www.foo.example.com", "/foo")).json()["pod"].startswith("echo-a")
    assert (await request(stack, "other.foo.example.com", "/bar")).json()["pod"].startswith("echo-a")
