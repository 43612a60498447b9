"""xDS over mTLS with real Envoys (docs/design.md §10): the stack's Envoy serves traffic over mTLS; an Envoy
without a client certificate, with one from another CA, or asking for a scope its identity was not granted
gets no configuration, and the edge's log (and /metrics, for a policy refusal) says why.

The Envoys run under a second edge of the stack that has an access policy; the stack's own edge has none."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from xdsbus_dev.harness.certs import ENVOY_IDENTITY, ClientTls, XdsPki
from xdsbus_dev.harness.envoy import Envoy
from xdsbus_dev.harness.stack import Edge, Stack

pytestmark = pytest.mark.slow


async def _until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


async def _unconfigured(envoy: Envoy) -> None:
    """The Envoy runs but has no listener or cluster from the control plane, and is not kept connected.
    An Envoy refused by the access policy opens its stream before the edge ends it, so its
    connected_state is 1 for an instant at each retry: it must fall back to 0, not stay."""
    assert envoy.running, envoy.output()
    assert await envoy.server_state() != "LIVE"
    assert await envoy.active_listeners() == []

    async def disconnected() -> bool:
        return await envoy.stat("control_plane.connected_state") == 0

    await _until(disconnected, 10, "the refused Envoy not connected to the control plane")


async def test_mtls_traffic_and_refusals(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1) as stack:
        # The default stack runs over mTLS: its Envoy is configured and serves traffic.
        assert stack.envoy is not None and stack.envoy.tls is not None
        response = await stack.curl("/a")
        assert response.status == 200, response.text

        policy = tmp_path / "policy.yaml"
        policy.write_text(f"allow:\n  - identity: {ENVOY_IDENTITY}\n    scopes: [default]\n")
        guarded = Edge(
            "edge-guarded",
            stack.nats.url,
            stack.log_dir,
            # gRPC logs refused TLS handshakes at INFO: the only trace a proxy without a valid
            # certificate leaves (it never reaches the access policy, so /metrics cannot count it).
            env={
                **stack.nats.client_env("edge"),
                "XDSBUS_XDS_ACCESS_POLICY": str(policy),
                "GRPC_VERBOSITY": "INFO",
            },
            pki=stack.pki,
        ).start()
        stack.edges.append(guarded)  # stopped with the stack
        await _until(guarded.ready, 30, "the guarded edge /ready")

        other = XdsPki(tmp_path / "other-ca").create()
        own = stack.pki
        envoys = {
            "no client certificate": Envoy(
                tmp_path / "envoy-nocert", [guarded.address], tls=ClientTls(own.ca_file)
            ),
            "another CA": Envoy(
                tmp_path / "envoy-otherca",
                [guarded.address],
                tls=ClientTls(own.ca_file, other.envoy_cert, other.envoy_key),
            ),
            "scope not granted": Envoy(
                tmp_path / "envoy-nosy", [guarded.address], scope="team-b", tls=own.client()
            ),
        }
        try:
            for envoy in envoys.values():
                envoy.start()
            for envoy in envoys.values():
                await envoy.wait_admin()

            async def refused() -> bool:
                log = guarded.service.output()
                # TLS handshakes refused by gRPC (no certificate, unknown CA), and the policy refusal.
                return (
                    log.count("Handshake failed") >= 2
                    and await guarded.metric("xdsbus_edge_xds_denied", reason="scope") >= 1
                )

            await _until(refused, 20, "the edge refusing all three Envoys")
            log = guarded.service.output()
            handshakes = [line for line in log.splitlines() if "Handshake failed" in line]
            assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" in line for line in handshakes), log[-3000:]
            # The other CA's certificate: its issuer does not verify against the edge's CA.
            assert any("PEER_DID_NOT_RETURN_A_CERTIFICATE" not in line for line in handshakes), log[-3000:]
            assert f"identity {ENVOY_IDENTITY} asked for scope 'team-b'" in log, log[-3000:]
            for envoy in envoys.values():
                await _unconfigured(envoy)
        finally:
            for envoy in envoys.values():
                await envoy.stop()
