"""The edge's /ready tells when it serves stale configuration (issue 14, docs/design.md §9): NATS lost,
or a version behind the ledger head, for longer than --ready-max-lag; a missing body is named in the
log, the metrics and /debug/scopez."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tests.edge.envoy_resources import base_config, cla
from tests.edge.support import http_get, serving
from xdsbus.contract.resources import Resource
from xdsbus.contract.type_urls import ENDPOINT
from xdsbus.ledger.store import store_bodies
from xdsbus_dev.harness.processes import eventually


def ready_status(edge):
    async def probe():
        return await http_get(edge.http_port, "/ready")

    return probe


@pytest.mark.slow
async def test_ready_fails_while_nats_is_lost_past_the_threshold_and_recovers(nats_server, ledger, make_edge):
    v = await base_config(ledger).commit()
    edge = await make_edge(ready_max_lag=1.0)
    await serving(edge, v)
    assert (await http_get(edge.http_port, "/ready"))[0] == 200
    nats_server.stop()

    async def refused():
        status, body = await http_get(edge.http_port, "/ready")
        return body if status == 503 else None

    body = await eventually(refused, timeout=15, what="/ready 503 while NATS is gone")
    assert "NATS lost for" in body
    assert "xdsbus_nats_connected 0" in (await http_get(edge.http_port, "/metrics"))[1]
    nats_server.start()

    async def ready_again():
        return (await http_get(edge.http_port, "/ready"))[0] == 200

    await eventually(ready_again, timeout=20, interval=0.2, what="/ready 200 after NATS is back")
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert "xdsbus_nats_connected 1" in metrics
    assert "xdsbus_nats_reconnects 1" in metrics


async def test_a_missing_body_is_named_and_a_version_behind_the_head_fails_ready(
    bus, ledger, make_edge, caplog
):
    caplog.set_level(logging.ERROR, logger="xdsbus_edge.ledger_follower")
    v1 = await base_config(ledger).commit()
    edge = await make_edge(ready_max_lag=0.5)
    await serving(edge, v1)
    ledger.put(cla("a", "10.9.9.9"))
    missing = ledger.sha(ENDPOINT, "a")
    v2 = await ledger.commit(withhold=[missing])

    async def behind():
        status, body = await http_get(edge.http_port, "/ready")
        return body if status == 503 else None

    body = await eventually(behind, timeout=15, what="/ready 503 while version 2 cannot be served")
    assert "scope default serves a version older than the ledger head" in body
    line = (
        f"scope default: version {v2} names a body NATS does not hold:"
        f" ClusterLoadAssignment 'a' (sha256 {missing})"
    )
    assert line in caplog.text
    assert caplog.text.count(line) == 1  # retries of the same version say nothing new
    metrics = (await http_get(edge.http_port, "/metrics"))[1]
    assert 'xdsbus_edge_bodies_missing{scope="default"} 1' in metrics
    lag = re.search(r'^xdsbus_edge_ledger_lag_seconds\{scope="default"\} (\S+)$', metrics, re.M)
    assert lag is not None and float(lag.group(1)) > 0
    scopez = json.loads((await http_get(edge.debug_port, "/debug/scopez"))[1])["default"]
    assert scopez["missing_bodies"] == [
        {"scope": "default", "version": v2, "type_url": ENDPOINT, "name": "a", "sha256": missing}
    ]
    assert scopez["lag_seconds"] > 0
    # The body shows up: version 2 is served, the edge is ready and no longer behind.
    body_of = ledger.table.get(ENDPOINT, "a")
    await store_bodies(bus, [Resource(body_of.sha256, body_of.body)])
    await serving(edge, v2)

    async def ready_again():
        return (await http_get(edge.http_port, "/ready"))[0] == 200

    await eventually(ready_again, what="/ready 200 once version 2 is served")
    scopez = json.loads((await http_get(edge.debug_port, "/debug/scopez"))[1])["default"]
    assert scopez["missing_bodies"] == [] and scopez["lag_seconds"] == 0
