"""The `xdsbus-edge` command: flags, ports, readiness, metrics, clean stop on SIGTERM."""

from __future__ import annotations

from tests.edge.envoy_resources import base_config
from tests.edge.support import LedgerWriter, http_get
from xdsbus_dev.harness.processes import Service, eventually, free_port, tool, wait_for_port


async def test_xdsbus_edge_command(bus, nats_server, tmp_path):
    xds_port, http_port, debug_port = free_port(), free_port(), free_port()
    edge = Service(
        [
            tool("xdsbus-edge"),
            "--nats-url",
            nats_server.url,
            "--xds-listen",
            f"127.0.0.1:{xds_port}",
            "--xds-plaintext",
            "true",
            "--log-format",
            "json",
        ],
        tmp_path / "edge.log",
        env={
            "XDSBUS_HTTP_LISTEN": f"127.0.0.1:{http_port}",
            "XDSBUS_DEBUG_LISTEN": f"127.0.0.1:{debug_port}",
        },
    ).start()
    try:
        wait_for_port(http_port)
        assert (await http_get(http_port, "/ready"))[0] == 503
        v = await base_config(LedgerWriter(bus)).commit()

        async def ready():
            return (await http_get(http_port, "/ready"))[0] == 200

        await eventually(ready, what="/ready 200")
        wait_for_port(xds_port)
        status, metrics = await http_get(http_port, "/metrics")
        assert status == 200
        for name in (
            "pilot_xds{",
            "pilot_xds_pushes",
            "pilot_xds_push_time",
            "pilot_proxy_convergence_time",
            "pilot_total_xds_rejects",
            "pilot_xds_cds_reject",
            "pilot_xds_config_size_bytes",
            "pilot_xds_expired_nonce",
        ):
            assert name in metrics, name
        assert f'xdsbus_edge_snapshot_version{{scope="default"}} {v}' in metrics
        assert (await http_get(debug_port, "/debug/syncz")) == (200, "[]\n")
        assert (await http_get(http_port, "/debug/syncz"))[0] == 404
        assert (await http_get(http_port, "/live")) == (200, "live\n")
    finally:
        code = edge.terminate()
    assert code == 0, edge.output()
    assert '"msg": "SIGTERM received: stopping"' in edge.output()
