"""A resource Envoy rejects: the translator cannot make one, so the test writes a ledger version by hand with
a Cluster whose lb_policy is not a defined enum value (Envoy NACKs it on proto validation). The edge shows the
NACK in /debug/syncz and does not resend it; Envoy keeps serving the last good version; the next good version
is accepted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import CLUSTER
from xdsbus_dev.harness.stack import Stack, publish_by_hand, resource_message

pytestmark = pytest.mark.slow


def find_nack(syncz: Any, node_id: str) -> dict[str, Any] | None:
    """In /debug/syncz, the CDS entry of proxy `node_id` that records a NACK with Envoy's error."""

    def walk(value: Any) -> dict[str, Any] | None:
        if isinstance(value, dict):
            if (
                value.get("type_url") == CLUSTER
                and value.get("nacked")
                and "LbPolicy" in str(value.get("last_error"))
            ):
                return value
            children = list(value.values())
        elif isinstance(value, list):
            children = value
        else:
            return None
        for child in children:
            found = walk(child)
            if found:
                return found
        return None

    proxies = syncz if isinstance(syncz, list) else [syncz]
    for proxy in proxies:
        if node_id in json.dumps(proxy):
            found = walk(proxy)
            if found:
                return found
    return None


ECHO_A = "outbound|80||echo-a.demo.svc.cluster.local"


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_a_rejected_cluster_is_nacked_not_resent_and_the_last_good_version_serves(
    tmp_path: Path, api_type: str
) -> None:
    async with Stack(tmp_path, api_type=api_type, edges=1) as stack:  # type: ignore[arg-type]
        envoy = stack.envoy
        assert envoy is not None
        edge = stack.edges[0]
        await stack.wait_for_pod("/a", "echo-a-")
        good = await envoy.versions()
        assert f"cluster/{ECHO_A}" in good, good
        await stack.stop_builder()

        key = ResourceKey(CLUSTER, ECHO_A)
        async with stack.bus() as bus:
            original = await resource_message(bus, "default", key)
            bad = cluster_pb2.Cluster()
            bad.ParseFromString(original)
            bad.lb_policy = 99  # type: ignore[assignment]
            bad_version = await publish_by_hand(bus, "default", {key: bad.SerializeToString()})

            async def rejected() -> bool:
                return await envoy.stat("cluster_manager.cds.update_rejected") >= 1

            await stack.wait(rejected, timeout=15, what="Envoy rejecting the invalid cluster")

            async def nack_shown() -> dict[str, Any] | None:
                return find_nack(await edge.syncz(), envoy.node_id)

            nack = await stack.wait(nack_shown, timeout=10, what="the NACK and its error in /debug/syncz")
            if api_type == "GRPC":
                assert nack["nacked"] == str(bad_version), nack
                assert nack["acked"] == good["cds"], nack

            # Envoy keeps the last good version and keeps serving with it.
            held = await envoy.versions()
            assert held[f"cluster/{ECHO_A}"] == good[f"cluster/{ECHO_A}"]
            assert await stack.pod_for("/a") == "echo-a-7c9d5f-1"

            # No resend loop: over a polled window neither the edge's pushes nor Envoy's rejections grow.
            samples: list[tuple[float, int, int]] = []

            async def quiet() -> bool:
                stats = await envoy.stats()
                samples.append(
                    (
                        await edge.metric("pilot_xds_pushes"),
                        stats.get("cluster_manager.cds.update_rejected", 0),
                        stats.get("cluster_manager.cds.update_attempt", 0),
                    )
                )
                return len(samples) >= 15

            await stack.wait(quiet, timeout=10, interval=0.1, what="a window of samples")
            assert samples[-1] == samples[0], f"the edge kept pushing: {samples[0]} -> {samples[-1]}"
            assert samples[-1][1] == 1

            # The next good version is sent and accepted.
            fixed = cluster_pb2.Cluster()
            fixed.ParseFromString(original)
            fixed.connect_timeout.seconds = 7
            success = (await envoy.stats())["cluster_manager.cds.update_success"]
            await publish_by_hand(bus, "default", {key: fixed.SerializeToString()})

            async def accepted() -> bool:
                return await envoy.stat("cluster_manager.cds.update_success") > success

            await stack.wait(accepted, timeout=15, what="Envoy accepting the next good version")
            assert (await envoy.versions())[f"cluster/{ECHO_A}"] != good[f"cluster/{ECHO_A}"]
            assert await envoy.stat("cluster_manager.cds.update_rejected") == 1
            assert await stack.pod_for("/a") == "echo-a-7c9d5f-1"
