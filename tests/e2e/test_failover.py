"""Killing the edge an Envoy streams from: Envoy reconnects to the other edge, and since both serve the same
ledger versions nothing changes in Envoy (same versions, no listener or cluster churn, no drain)."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdsbus_dev.harness.stack import Stack, endpoint_slice_manifest, service_manifest

pytestmark = pytest.mark.slow

# Counters that move when Envoy really changes its configuration.
CHURN = (
    "cluster_manager.cluster_added",
    "cluster_manager.cluster_modified",
    "cluster_manager.cluster_removed",
    "listener_manager.listener_added",
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "listener_manager.listener_in_place_updated",
)
# Accepted updates: on a new SotW stream the edge may answer the first request of each type once.
UPDATES = ("cluster_manager.cds.update_success", "listener_manager.lds.update_success")


@pytest.mark.parametrize("api_type", ["GRPC", "DELTA_GRPC"])
async def test_killing_the_connected_edge_reconnects_without_churn(tmp_path: Path, api_type: str) -> None:
    async with Stack(tmp_path, api_type=api_type) as stack:  # type: ignore[arg-type]
        envoy = stack.envoy
        assert envoy is not None
        await stack.wait_for_pod("/a", "echo-a-")
        connected = await stack.connected_edge()
        other = next(edge for edge in stack.edges if edge is not connected)
        versions = await envoy.versions()
        before = await envoy.stats()
        assert before["control_plane.connected_state"] == 1

        stack.kill_edge(connected)

        async def reconnected() -> bool:
            stats = await envoy.stats()
            assert stats["listener_manager.total_listeners_draining"] == 0
            return (
                await envoy.connected_edges() == [other.address]
                and stats["control_plane.connected_state"] == 1
                and envoy.node_id in str(await other.syncz())
            )

        await stack.wait(reconnected, timeout=20, what=f"Envoy streaming from {other.name}")

        # Let whatever the new stream brings arrive (polled, watching for drains), then compare.
        samples = []

        async def settled() -> bool:
            stats = await envoy.stats()
            assert stats["listener_manager.total_listeners_draining"] == 0
            samples.append({k: stats.get(k, 0) for k in (*UPDATES, "cluster_manager.cds.update_attempt")})
            return len(samples) >= 10 and samples[-1] == samples[-10]

        await stack.wait(settled, timeout=10, interval=0.1, what="Envoy's xDS counters to settle")
        after = await envoy.stats()
        print({name: after.get(name, 0) - before.get(name, 0) for name in (*CHURN, *UPDATES)})
        for name in CHURN:
            assert after.get(name, 0) == before.get(name, 0), (
                f"{name}: {before.get(name)} -> {after.get(name)}"
            )
        for name in UPDATES:
            assert after.get(name, 0) - before.get(name, 0) <= 1, (
                f"{name}: {before.get(name)} -> {after.get(name)}"
            )
        assert after["listener_manager.total_listeners_draining"] == 0
        assert after.get("cluster_manager.warming_clusters", 0) == 0
        assert await envoy.versions() == versions
        assert await stack.pod_for("/a") == "echo-a-7c9d5f-1"
        assert await stack.pod_for("/") == "echo-b-7c9d5f-1"

        # And the new edge keeps it up to date.
        new_pod = await stack.add_pod("echo-b")
        stack.write(
            "echo-b.yaml",
            [service_manifest("echo-b", new_pod.port), endpoint_slice_manifest("echo-b", new_pod.port)],
        )
        await stack.wait_for_pod("/", "echo-b-7c9d5f-2")
