"""Traffic through a real Envoy configured from the ledger, in ADS SotW and ADS Delta mode."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from envoy.config.route.v3 import route_pb2

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import LISTENER, ROUTE
from xdsbus.ledger import reader
from xdsbus.model.routes import ListenerModel
from xdsbus.translate.envoy_routes import build_http_listener, http_route_config_name, listener_name
from xdsbus_dev.harness.processes import free_port
from xdsbus_dev.harness.stack import (
    HOST,
    Stack,
    endpoint_slice_manifest,
    ingress_manifest,
    publish_by_hand,
    service_manifest,
)

pytestmark = pytest.mark.slow

API_TYPES = ["GRPC", "DELTA_GRPC"]
ECHO_B = "outbound|80||echo-b.demo.svc.cluster.local"


@pytest.mark.parametrize("api_type", API_TYPES)
async def test_traffic_flows_and_an_endpoint_change_moves_it(tmp_path: Path, api_type: str) -> None:
    async with Stack(tmp_path, api_type=api_type) as stack:  # type: ignore[arg-type]
        assert stack.envoy is not None
        response = await stack.curl("/a/b?x=1", headers={"X-Probe": "yes"})
        assert response.status == 200, response.text
        body = response.json()
        assert body["pod"] == "echo-a-7c9d5f-1"
        assert (body["namespace"], body["service"], body["host"]) == ("demo", "echo-a", HOST)
        assert body["path"] == "/a/b?x=1"
        assert body["headers"]["X-Probe"] == ["yes"]
        assert await stack.pod_for("/") == "echo-b-7c9d5f-1"
        assert await stack.pod_for("/b/c") == "echo-b-7c9d5f-1"
        assert (await stack.curl("/", host="unknown.local")).status == 404
        if api_type == "GRPC":
            # SotW version strings are names of the ledger versions Envoy's configuration came from.
            async with stack.bus() as bus:
                ledger = {str(entry.record.version) async for entry in reader.entries(bus, "default")}
            held = await stack.envoy.versions()
            assert {held["cds"], held["lds"]} <= ledger, (held, ledger)

        # A new pod replaces echo-a's endpoint: an EDS-only change.
        new_pod = await stack.add_pod("echo-a")
        clusters_before = await stack.envoy.stat("cluster_manager.cluster_modified")
        stack.write(
            "echo-a.yaml",
            [
                service_manifest("echo-a", stack.echoes["echo-a-7c9d5f-1"].port),
                endpoint_slice_manifest("echo-a", new_pod.port),
            ],
        )
        assert await stack.wait_for_pod("/a", "echo-a-7c9d5f-2") == "echo-a-7c9d5f-2"
        assert await stack.envoy.stat("cluster_manager.cluster_modified") == clusters_before
        assert await stack.pod_for("/") == "echo-b-7c9d5f-1"


@pytest.mark.parametrize("api_type", API_TYPES)
async def test_a_route_and_a_listener_added_later_start_serving(tmp_path: Path, api_type: str) -> None:
    async with Stack(tmp_path, api_type=api_type, ingress=False) as stack:  # type: ignore[arg-type]
        envoy = stack.envoy
        assert envoy is not None
        # The gateway listener exists from the start (as in Higress), with no route for demo.local yet.
        await envoy.wait_for_listener(stack.listener)
        assert (await stack.curl("/a")).status == 404

        stack.write("ingress.yaml", [stack.demo_ingress()])
        await stack.wait_for_pod("/a", "echo-a-")
        await stack.wait_for_pod("/", "echo-b-")
        stack.write("other.yaml", [ingress_manifest("other", "other.local", [("/", "echo-a")])])
        await stack.wait_for_pod("/", "echo-a-", host="other.local")
        assert await stack.pod_for("/") == "echo-b-7c9d5f-1"  # demo.local unchanged

        # A listener on a new port, with its own route configuration. The translator makes only the
        # gateway's listener so far (no Gateway API yet), so this version is written into the ledger by hand.
        await stack.stop_builder()
        port = free_port()
        name, route_name = listener_name(port), http_route_config_name(port)
        listener = build_http_listener(ListenerModel(name=name, port=port, route_config=route_name))
        routes = route_pb2.RouteConfiguration(name=route_name)
        vhost = routes.virtual_hosts.add(name=f"late:{port}", domains=["*"])
        route = vhost.routes.add()
        route.match.prefix = "/"
        route.route.cluster = ECHO_B
        async with stack.bus() as bus:
            await publish_by_hand(
                bus,
                "default",
                {
                    ResourceKey(LISTENER, name): listener.SerializeToString(deterministic=True),
                    ResourceKey(ROUTE, route_name): routes.SerializeToString(deterministic=True),
                },
            )
        await envoy.wait_for_listener(name)

        async def served() -> bool:
            response = await envoy.get("/late", port=port, host="anything.test")
            return response.status == 200 and str(response.json()["pod"]).startswith("echo-b-")

        await stack.wait(served, timeout=15, what=f"the new listener on port {port} serving")
        assert await stack.pod_for("/a") == "echo-a-7c9d5f-1"
        assert await envoy.stat("listener_manager.total_listeners_draining") == 0


async def test_editing_a_watched_file_changes_what_curl_returns(tmp_path: Path) -> None:
    async with Stack(tmp_path) as stack:
        assert await stack.pod_for("/a") == "echo-a-7c9d5f-1"
        started = time.monotonic()
        stack.write("ingress.yaml", [ingress_manifest("demo", HOST, [("/a", "echo-b"), ("/", "echo-a")])])
        await stack.wait_for_pod("/a", "echo-b-", timeout=5)
        await stack.wait_for_pod("/", "echo-a-", timeout=5)
        elapsed = time.monotonic() - started
        print(f"file edit to Envoy serving it: {elapsed:.3f}s")

        stack.remove("ingress.yaml")

        async def gone() -> bool:
            try:
                return (await stack.curl("/a")).status == 404
            except (OSError, asyncio.IncompleteReadError):
                return True  # no Ingress left: no listener either

        await stack.wait(gone, timeout=5, what="demo.local gone after its Ingress file was removed")
