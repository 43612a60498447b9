"""Secrets sealed at rest (issue 13 point 4, docs/design.md §5, §10), with a real Envoy: the ledger's body
store holds the Secret sealed (no PEM, no private key bytes), the edge opens it and Envoy serves TLS, a
replay equals live, the edge's debug pages sit on their own loopback port and redact the key, and no
log line of any service holds it."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdsbus.contract.type_urls import SECRET
from xdsbus.ledger import reader
from xdsbus.ledger.store import fetch_stored, sealed_kid
from xdsbus.replay import replay_to
from xdsbus.secretbox import SecretBox
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.stack import Stack, ingress_manifest, tls_secret_manifest

pytestmark = pytest.mark.slow

SHOP = "shop.example.com"


async def test_secret_bodies_sealed_at_rest_while_envoy_serves_tls(tmp_path: Path) -> None:
    ca = TestCA()
    cert = ca.issue(SHOP)
    key_lines = [line for line in cert.key_pem.decode().splitlines() if "-----" not in line]
    async with Stack(tmp_path, edges=1, backends=("echo-a",), ingress=False) as stack:
        ingress = ingress_manifest("shop", SHOP, [("/", "echo-a")])
        ingress["spec"]["tls"] = [{"hosts": [SHOP], "secretName": "shop-tls"}]
        stack.write("tls.yaml", [tls_secret_manifest("shop-tls", cert.cert_pem, cert.key_pem), ingress])
        context = ca.client_context()

        async def served() -> bool:
            try:
                response = await stack.curl_tls("/x", SHOP, context)
            except OSError:
                return False
            return response.status == 200 and response.json()["host"] == SHOP

        await stack.wait(served, what="shop over TLS")

        async with stack.bus() as bus:
            head = await reader.head(bus, "default")
            assert head is not None
            resources = await reader.resource_set(bus, "default", head.record.version)
            secrets = [sha for key, sha in resources.items() if key.type_url == SECRET]
            assert secrets, "no Secret in the ledger"
            box = SecretBox.from_env()
            for sha in secrets:
                stored = await fetch_stored(bus, sha)
                assert b"PRIVATE KEY" not in stored
                assert not any(line.encode() in stored for line in key_lines)
                assert sealed_kid(stored) == box.kid

            # Replay equals live: the digest names plaintext hashes, whatever the body store holds.
            result, _ = await replay_to(
                bus,
                "default",
                head.record.version,
                TranslatorSettings.parse(head.record.translator_version),
                box,
                head.record.digest_algorithm,
            )
            assert result.digest == head.record.digest

        edge = stack.edges[0]
        # Debug pages are not on the probes' port; on their own, the private key is redacted.
        assert (await edge.get("/debug/configz")).status == 404
        assert (await edge.get("/live")).status == 200
        configz = await edge.debug("/debug/configz")
        assert configz.status == 200 and "[redacted]" in configz.text
        assert not any(line in configz.text for line in key_lines)

    for log in stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert not any(line in text for line in key_lines), f"{log.name} holds the private key"
