"""Ingress rules end to end (one Stack for the module): hosts (exact, wildcard, none), path types and
Higress route order, spec.defaultBackend, Service ports by name, two Ingresses claiming one match (the
older wins, the newer is told), and EndpointSlice conditions deciding which pods get traffic."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.e2e.ingress_support import (
    EchoService,
    Expect,
    IngressPath,
    add_service,
    cli_status,
    count_pods,
    ingress,
    ingress_status,
    request,
    wait_all,
    wait_warning,
)
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.translate.route_table_choice import SPLIT_FROM_HOSTS
from xdsbus_dev.harness.stack import Stack, edge_installed

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

BACKENDS = ("echo-a", "echo-b", "echo-c", "echo-d", "echo-e")
OLD = "2025-01-01T00:00:00Z"
NEW = "2026-06-01T00:00:00Z"


def _manifests(ready: EchoService) -> list[dict[str, Any]]:
    hosts = ingress(
        "hosts",
        {
            "exact.example.com": [IngressPath("/", "echo-a")],
            "*.example.com": [IngressPath("/", "echo-b")],
            # No host: every other host name (`*`).
            "": [IngressPath("/", "echo-c")],
        },
    )
    # Written shortest path first: the order served must come from Higress's sort, not the manifest.
    paths = ingress(
        "paths",
        {
            "paths.example.com": [
                IngressPath("/foo", "echo-a"),
                IngressPath("/foo/bar", "echo-b"),
                IngressPath("/exact", "echo-d"),
                IngressPath("/exact", "echo-c", "Exact"),
                IngressPath("/impl", "echo-a", "ImplementationSpecific"),
                IngressPath("/named", "echo-c", port="http"),
                IngressPath("/badport", "echo-c", port="grpc"),
            ]
        },
        default_backend="echo-e",
    )
    endpoints = ingress("endpoints", {"ready.example.com": [IngressPath("/", ready.name)]})
    return [hosts, paths, endpoints, *ready.manifests()]


OLD_INGRESS = ingress("old", {"conflict.example.com": [IngressPath("/same", "echo-a")]}, created=OLD)
NEW_INGRESS = ingress(
    "new",
    {"conflict.example.com": [IngressPath("/same", "echo-b"), IngressPath("/own", "echo-b")]},
    created=NEW,
)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    async with Stack(tmp_path_factory.mktemp("rules"), edges=1, backends=BACKENDS) as stack:
        # Pods 1 and 2 ready, 3 not ready, 4 terminating but still serving.
        ready = await add_service(
            stack,
            "echo-r",
            4,
            conditions=[(True, True, False), (True, True, False), (False, False, False), (False, True, True)],
        )
        stack.write("rules.yaml", _manifests(ready))
        stack.write("conflict.yaml", [NEW_INGRESS, OLD_INGRESS])
        await wait_all(
            stack,
            [
                Expect("exact.example.com", pod="echo-a"),
                Expect("paths.example.com", "/foo/bar", pod="echo-b"),
                Expect("paths.example.com", "/nothing", pod="echo-e"),
                Expect("conflict.example.com", "/own", pod="echo-b"),
                Expect("ready.example.com", pod="echo-r"),
            ],
        )
        yield stack


async def pod(stack: Stack, host: str, target: str = "/") -> str:
    """The pod that answered, or `<status>` when the answer was not 200."""
    response = await request(stack, host, target)
    return str(response.json()["pod"]) if response.status == 200 else str(response.status)


async def test_exact_wildcard_and_missing_hosts(stack: Stack) -> None:
    assert await pod(stack, "exact.example.com") == "echo-a-7c9d5f-1"
    assert await pod(stack, "EXACT.example.com:8080") == "echo-a-7c9d5f-1"
    assert await pod(stack, "x.example.com") == "echo-b-7c9d5f-1"
    assert await pod(stack, "example.com") == "echo-c-7c9d5f-1"
    assert await pod(stack, "other.org") == "echo-c-7c9d5f-1"
    response = await request(stack, "x.example.com", "/p?q=1")
    assert (response.json()["host"], response.json()["path"]) == ("x.example.com", "/p?q=1")


async def test_a_wildcard_host_covers_one_label_only(stack: Stack) -> None:
    # Kubernetes Ingress: `*.example.com` matches `x.example.com`, not `a.b.example.com`, which falls to
    # the host-less rule.
    assert await pod(stack, "a.b.example.com") == "echo-c-7c9d5f-1"


async def test_path_types_and_higress_order(stack: Stack) -> None:
    host = "paths.example.com"
    expected = {
        "/foo": "echo-a",
        "/foo/": "echo-a",
        "/foo/x": "echo-a",
        "/foo/bar": "echo-b",
        "/foo/bar/baz": "echo-b",
        # A Kubernetes prefix matches whole path elements.
        "/foobar": "echo-e",
        "/foo/barbaz": "echo-a",
        # Exact beats the prefix on the same path.
        "/exact": "echo-c",
        "/exact/": "echo-d",
        "/exact/x": "echo-d",
        "/exactly": "echo-e",
        # ImplementationSpecific is a prefix.
        "/impl": "echo-a",
        "/impl/y": "echo-a",
        "/implx": "echo-e",
        # A Service port by name.
        "/named/z": "echo-c",
        # spec.defaultBackend takes the rest.
        "/": "echo-e",
        "/nothing/here": "echo-e",
    }
    answered = {target: (await pod(stack, host, target)).rsplit("-", 2)[0] for target in expected}
    assert answered == expected
    body = (await request(stack, host, "/foo/bar/baz?x=1")).json()
    assert body["path"] == "/foo/bar/baz?x=1"


async def test_unknown_port_name_is_reported_and_the_rest_serves(stack: Stack) -> None:
    warnings = await wait_warning(stack, "paths", "rules[0].http.paths[6]", "no port named 'grpc'")
    assert warnings == ["rules[0].http.paths[6]: service demo/echo-c has no port named 'grpc'"]
    # The path stays routed (it is not taken by the default backend) but has nowhere to go.
    assert await pod(stack, "paths.example.com", "/badport") == "503"
    assert await pod(stack, "paths.example.com", "/named") == "echo-c-7c9d5f-1"


async def test_the_older_ingress_wins_a_conflict_and_the_newer_is_told(stack: Stack) -> None:
    assert await pod(stack, "conflict.example.com", "/same") == "echo-a-7c9d5f-1"
    assert await pod(stack, "conflict.example.com", "/same/deeper") == "echo-a-7c9d5f-1"
    # The loser keeps what nobody else claims.
    assert await pod(stack, "conflict.example.com", "/own") == "echo-b-7c9d5f-1"
    await wait_warning(stack, "new", "conflict.example.com")
    rows = await cli_status(stack, "Ingress/demo/new")
    assert [(r["kind"], r["key"], r["state"]) for r in rows] == [("Ingress", "demo/new", "accepted")]
    assert rows[0]["warnings"] == [
        "host conflict.example.com: prefix /same is already served by Ingress demo/old (older wins)"
    ]
    old = await ingress_status(stack, "old")
    assert old is not None and old.warnings == []

    # The older one goes: the newer takes the match over and its warning is withdrawn.
    stack.write("conflict.yaml", [NEW_INGRESS])
    await stack.wait_for_pod("/same", "echo-b-", host="conflict.example.com")

    async def settled() -> bool:
        new, old = await ingress_status(stack, "new"), await ingress_status(stack, "old")
        return new is not None and new.warnings == [] and old is None

    await stack.wait(settled, timeout=10, what="the conflict warning withdrawn")


async def test_only_ready_endpoints_get_traffic(stack: Stack) -> None:
    counts = await count_pods(stack, "ready.example.com", "/", 40)
    # Round robin over the two ready pods; neither the unready nor the terminating one gets a request.
    assert counts == {"echo-r-7c9d5f-1": 20, "echo-r-7c9d5f-2": 20}
    assert stack.echoes["echo-r-7c9d5f-3"].log == stack.echoes["echo-r-7c9d5f-4"].log
    assert len(stack.echoes["echo-r-7c9d5f-3"].log) == 0
    assert len(stack.echoes["echo-r-7c9d5f-4"].log) == 0
    # Envoy knows the terminating pod (draining, for requests already on it) but not the unready one.
    assert stack.envoy is not None
    hosts = await stack.envoy.upstream_hosts("outbound|80||echo-r.demo.svc.cluster.local")
    ports = {int(address.rsplit(":", 1)[1]): fields for address, fields in hosts.items()}
    pods = stack.echoes
    assert set(ports) == {pods[f"echo-r-7c9d5f-{n}"].port for n in (1, 2, 4)}
    assert ports[pods["echo-r-7c9d5f-4"].port]["health_flags"] != "healthy"
    assert ports[pods["echo-r-7c9d5f-1"].port]["health_flags"] == "healthy"


async def test_the_builder_serves_only_ingresses_of_its_class(stack: Stack) -> None:
    # watch-file publishes every Ingress; the builder (--ingress-class, default higress) decides.
    host = "classy.test"
    served = ingress("classy", {host: [IngressPath("/", "echo-d")]})
    stack.write("class.yaml", [served])
    await stack.wait_for_pod("/", "echo-d-", host=host)

    foreign = ingress("classy", {host: [IngressPath("/", "echo-d")]})
    foreign["spec"]["ingressClassName"] = "nginx"
    stack.write("class.yaml", [foreign])

    async def ignored() -> ObjectStatus | None:
        status = await ingress_status(stack, "classy")
        return status if status is not None and status.state == Verdict.IGNORED else None

    status = await stack.wait(ignored, what="Ingress classy ignored")
    assert status.reason == (
        "Ingress demo/classy: ignored: class 'nginx' (spec.ingressClassName) is not 'higress' and its "
        "IngressClass is not handled by higress.io/higress-controller"
    )
    # Its host now falls to the host-less rule of Ingress `hosts`, as any unknown host does.
    await stack.wait_for_pod("/", "echo-c-", host=host)

    # Switched back: served again.
    stack.write("class.yaml", [served])
    await stack.wait_for_pod("/", "echo-d-", host=host)
    stack.remove("class.yaml")


# -- the same host semantics through a split route table (docs/route-table-split.md) ------------------

# The hosts of `many.yaml`: with the four of `split.yaml`, past the threshold of --route-tables auto.
MANY = SPLIT_FROM_HOSTS


def _many() -> dict[str, Any]:
    return ingress("many", {f"h{i}.many.example": [IngressPath("/", "echo-d")] for i in range(MANY)})


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def split_stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    if not edge_installed():
        pytest.skip("xdsbus-edge is not installed (pip install -e services/edge)")
    with pytest.MonkeyPatch.context() as env:
        # The builder reads its flags from the environment too; the Stack starts it with this one (auto,
        # the default, whatever the environment running the tests forces).
        env.setenv("XDSBUS_ROUTE_TABLES", "auto")
        async with Stack(tmp_path_factory.mktemp("split"), edges=1, backends=BACKENDS) as stack:
            env.delenv("XDSBUS_ROUTE_TABLES")
            hosts = ingress(
                "split",
                {
                    "exact.example.com": [IngressPath("/own", "echo-a")],
                    "*.example.com": [IngressPath("/", "echo-b")],
                    "": [IngressPath("/", "echo-c")],
                },
            )
            paths = ingress(
                "paths", {"paths.example.com": [IngressPath("/foo", "echo-d")]}, default_backend="echo-e"
            )
            stack.write("split.yaml", [hosts, paths])
            stack.write("many.yaml", [_many()])
            await wait_all(
                stack,
                [
                    Expect("exact.example.com", "/own", pod="echo-a"),
                    Expect(f"h{MANY - 1}.many.example", pod="echo-d"),
                ],
            )
            yield stack


async def _route_configs(stack: Stack) -> tuple[set[str], int]:
    """The route configurations Envoy holds, and its number of scopes."""
    assert stack.envoy is not None
    dump = await stack.envoy.config_dump()
    scopes = stack.envoy.section(dump, "type.googleapis.com/envoy.admin.v3.ScopedRoutesConfigDump")
    routes = stack.envoy.section(dump, "type.googleapis.com/envoy.admin.v3.RoutesConfigDump")
    held = sum(len(c.get("scoped_route_configs", [])) for c in scopes.get("dynamic_scoped_route_configs", []))
    return {c["route_config"]["name"] for c in routes.get("dynamic_route_configs", [])}, held


async def _reads(stack: Stack, *, split: bool) -> bool:
    """Whether the active HTTP listener reads the tables (Scoped RDS) when `split`, else one table (RDS),
    and Envoy holds the table(s) it reads. The old form may linger while the old listener drains."""
    assert stack.envoy is not None
    one_table = f"http.{stack.gateway_port}"
    listener = (await stack.envoy.listeners()).get(f"0.0.0.0_{stack.gateway_port}", {})
    chains = listener.get("active_state", {}).get("listener", {}).get("filter_chains") or [{}]
    manager = (chains[0].get("filters") or [{}])[0].get("typed_config", {})
    names, scopes = await _route_configs(stack)
    if split:
        return "scoped_routes" in manager and f"{one_table}.000" in names and scopes > 0
    return "rds" in manager and one_table in names


async def _wait_form(stack: Stack, reason: str) -> None:
    """Until the builder's status of the HTTP port's route table, as `xdsbus status` shows it, starts with
    `reason` (it is written after the version)."""

    async def shown() -> bool:
        entries = await cli_status(stack, f"Builder/http.{stack.gateway_port}")
        return len(entries) == 1 and str(entries[0]["reason"]).startswith(reason)

    await stack.wait(shown, timeout=15, what=f"xdsbus status saying {reason!r}")


SPLIT_EXPECTED = {
    ("exact.example.com", "/own"): "echo-a",
    # An exact host ends with its wildcard host's routes, then the host-less rules.
    ("exact.example.com", "/other"): "echo-b",
    # Case and port do not matter.
    ("EXACT.Example.COM:8080", "/own"): "echo-a",
    ("x.example.com", "/"): "echo-b",
    # One label under the wildcard only; deeper names and other hosts take the host-less rule.
    ("a.b.example.com", "/"): "echo-c",
    ("other.org", "/"): "echo-c",
    # The default backend takes what no rule of its Ingress matches.
    ("paths.example.com", "/foo/x"): "echo-d",
    ("paths.example.com", "/nothing"): "echo-e",
}


async def test_a_split_route_table_keeps_every_host_rule(split_stack: Stack) -> None:
    stack = split_stack
    await stack.wait(lambda: _reads(stack, split=True), timeout=30, what="Envoy reading the split tables")
    await _wait_form(stack, "split into 8 tables: ")
    for (host, target), backend in SPLIT_EXPECTED.items():
        assert await pod(stack, host, target) == f"{backend}-7c9d5f-1", (host, target)


async def test_auto_crosses_back_to_one_table_and_splits_again_keeping_every_host_rule(
    split_stack: Stack,
) -> None:
    stack = split_stack
    # Below the threshold: the listener reads the one table again, byte for byte the unsplit output.
    stack.remove("many.yaml")
    await stack.wait(lambda: _reads(stack, split=False), timeout=30, what="Envoy reading one table")
    await wait_all(stack, [Expect("exact.example.com", "/own", pod="echo-a")])
    await _wait_form(stack, "one table: ")
    for (host, target), backend in SPLIT_EXPECTED.items():
        assert await pod(stack, host, target) == f"{backend}-7c9d5f-1", (host, target)
    # And above it again.
    stack.write("many.yaml", [_many()])
    await stack.wait(lambda: _reads(stack, split=True), timeout=30, what="Envoy reading the split tables")
    await wait_all(stack, [Expect(f"h{MANY - 1}.many.example", pod="echo-d")])
    for (host, target), backend in SPLIT_EXPECTED.items():
        assert await pod(stack, host, target) == f"{backend}-7c9d5f-1", (host, target)
