"""`xdsbus proxy-status` and `xdsbus proxy-config` against a real stack (one for the module; every service
with its own NATS role, the CLI as the reader): a real Envoy shows SYNCED on each type it subscribed to
(SDS through a TLS Ingress); proxy-config prints its clusters, and its Secret with the key redacted; a
Cluster Envoy rejects shows NACKED with Envoy's error; once Envoy stops, its entry goes
(docs/proxy-status.md)."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from envoy.config.cluster.v3 import cluster_pb2

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import CLUSTER
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.processes import tool
from xdsbus_dev.harness.stack import (
    Stack,
    ingress_manifest,
    publish_by_hand,
    resource_message,
    tls_secret_manifest,
)

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

SHOP = "shop.local"
ECHO_A = "outbound|80||echo-a.demo.svc.cluster.local"
SUBSCRIBED = ("CDS", "LDS", "EDS", "RDS", "SDS")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    workdir: Path = tmp_path_factory.mktemp("proxy-status")
    cert = TestCA().issue(SHOP)
    async with Stack(workdir, edges=1, backends=("echo-a",), nats_users=True) as stack:
        ingress = ingress_manifest("shop", SHOP, [("/", "echo-a")])
        ingress["spec"]["tls"] = [{"hosts": [SHOP], "secretName": "shop-tls"}]
        stack.write("tls.yaml", [tls_secret_manifest("shop-tls", cert.cert_pem, cert.key_pem), ingress])
        await stack.wait_for_pod("/a", "echo-a-")
        yield stack


async def xdsbus(stack: Stack, *args: str) -> tuple[int, str, str]:
    """Run the `xdsbus` CLI as the reader role; its exit status, stdout and stderr."""
    proc = await asyncio.create_subprocess_exec(
        tool("xdsbus"),
        *args,
        "--nats-url",
        stack.nats.url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **stack.nats.client_env("reader")},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def status_rows(stack: Stack) -> list[dict[str, Any]]:
    code, out, err = await xdsbus(stack, "proxy-status", "--output", "json")
    assert code == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list), rows
    return rows


async def row_of(stack: Stack, node_id: str) -> dict[str, Any] | None:
    rows = [r for r in await status_rows(stack) if r["name"] == node_id]
    assert len(rows) <= 1, rows
    return rows[0] if rows else None


async def test_the_envoy_is_synced_on_every_type_it_subscribed(stack: Stack) -> None:
    assert stack.envoy is not None
    node = stack.envoy.node_id
    edge = await stack.connected_edge()

    async def synced() -> dict[str, Any] | None:
        row = await row_of(stack, node)
        if row is None or any(row["types"][t]["state"] != "SYNCED" for t in SUBSCRIBED):
            return None
        return row

    row = await stack.wait(synced, timeout=20, what="every type SYNCED in proxy-status")
    assert row["scope"] == "default"
    assert row["version"] == row["head"]
    # No WasmPlugin: the Envoy asks for no extension config.
    assert row["types"]["ECDS"]["state"] == "NOT SENT"
    # The edge it streams from, named by its xDS port (<hostname>-<port>).
    assert row["edge"].endswith(f"-{edge.xds_port}")

    code, out, _ = await xdsbus(stack, "proxy-status")
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split() == ["NAME", "SCOPE", "EDGE", "CDS", "LDS", "EDS", "RDS", "ECDS", "SDS", "VERSION"]
    (line,) = [line for line in lines if line.startswith(node)]
    assert line.split() == [
        node,
        "default",
        row["edge"],
        *["SYNCED"] * 4,
        "NOT",
        "SENT",
        "SYNCED",
        str(row["version"]),
    ]


async def test_proxy_config_prints_what_the_proxy_was_sent(stack: Stack) -> None:
    assert stack.envoy is not None
    node = stack.envoy.node_id
    code, out, err = await xdsbus(stack, "proxy-config", node, "--type", "clusters")
    assert code == 0, err
    assert f"\n  {ECHO_A}\n" in out, out
    assert "CLUSTERS (version" in out

    code, out, err = await xdsbus(stack, "proxy-config", node, "--type", "secrets", "--json")
    assert code == 0, err
    secrets = json.loads(out)["types"]["secrets"]
    (secret,) = secrets["resources"]
    key = secret["tls_certificate"]["private_key"]
    assert key == {"inline_string": "[redacted]"}, secret
    assert "PRIVATE KEY" not in out

    code, _, err = await xdsbus(stack, "proxy-config", "no-such-proxy")
    assert code == 2 and "no proxy 'no-such-proxy'" in err


async def test_a_rejected_cluster_shows_nacked_with_envoys_error(stack: Stack) -> None:
    assert stack.envoy is not None
    node = stack.envoy.node_id
    await stack.stop_builder()
    key = ResourceKey(CLUSTER, ECHO_A)
    async with stack.bus() as bus:
        bad = cluster_pb2.Cluster()
        bad.ParseFromString(await resource_message(bus, "default", key))
        bad.lb_policy = 99  # type: ignore[assignment]
        bad_version = await publish_by_hand(bus, "default", {key: bad.SerializeToString()})

    async def nacked() -> dict[str, Any] | None:
        row = await row_of(stack, node)
        return row if row is not None and row["types"]["CDS"]["state"] == "NACKED" else None

    row = await stack.wait(nacked, timeout=20, what="CDS NACKED in proxy-status")
    cds = row["types"]["CDS"]
    assert cds["nacked"] == str(bad_version)
    assert "LbPolicy" in cds["error"], cds
    assert row["types"]["LDS"]["state"] == "SYNCED"

    code, out, _ = await xdsbus(stack, "proxy-status", node)
    assert code == 0
    assert "NACKED" in out.splitlines()[1]
    assert f"{node} ({row['edge']}) CDS rejected version {bad_version}: " in out
    assert "LbPolicy" in out


async def test_a_stopped_envoy_leaves_proxy_status(stack: Stack) -> None:
    assert stack.envoy is not None
    node = stack.envoy.node_id
    assert await row_of(stack, node) is not None
    await stack.envoy.stop()

    async def gone() -> bool:
        return await row_of(stack, node) is None

    await stack.wait(gone, timeout=10, what="the stopped Envoy's entry removed")
    code, out, _ = await xdsbus(stack, "proxy-status")
    assert code == 0 and out == "no proxies connected to any edge\n"
