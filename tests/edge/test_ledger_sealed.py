"""Sealed Secret bodies at the edge (docs/design.md §5, §10): an edge opens them with its keyring and
serves the plaintext; an edge without the sealing key serves nothing of that version (a clear error and
a metric, no crash); debug pages listen on loopback only, apart from /metrics, /ready and /live, and
never show a private key."""

from __future__ import annotations

import json

from tests.edge.envoy_resources import base_config, cla, secret
from tests.edge.support import LedgerWriter, http_get, serving
from xdsbus.contract.type_urls import ENDPOINT, SECRET
from xdsbus.ledger.store import fetch_stored, sealed_kid
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import eventually
from xdsbus_edge.app import EdgeConfig
from xdsbus_edge.main import parse_args

KEYRING = SecretBox(b"e" * 32)
OTHER = SecretBox(b"x" * 32)
PRIVATE = "-----BEGIN PRIVATE KEY-----topsecret"


async def test_an_edge_opens_sealed_secrets_with_its_keyring(bus, make_edge) -> None:
    ledger = LedgerWriter(bus)
    ledger.publisher.secret_box = KEYRING
    v = await base_config(ledger).put(secret("s1", PRIVATE)).commit()
    stored = await fetch_stored(bus, ledger.sha(SECRET, "s1"))
    assert b"topsecret" not in stored and sealed_kid(stored) == KEYRING.kid

    edge = await make_edge(keyring=KEYRING)
    await serving(edge, v)
    snap = edge.cache.current("default")
    assert snap is not None
    assert snap.of(SECRET)["s1"].body == ledger.table.get(SECRET, "s1").body  # the plaintext, verified

    # Debug pages: on their own loopback port, private keys redacted; not on the probes' port.
    assert edge.debug_http._server is not None
    assert {s.getsockname()[0] for s in edge.debug_http._server.sockets} == {"127.0.0.1"}
    status, body = await http_get(edge.debug_port, "/debug/configz")
    assert status == 200 and "topsecret" not in body
    sds = json.loads(body)["default"]["resources"]["sds"]
    assert sds[0]["tls_certificate"]["private_key"]["inline_string"] == "[redacted]"
    for page in ("/debug/configz", "/debug/syncz", "/debug/scopez"):
        assert (await http_get(edge.http_port, page))[0] == 404, page
    for page in ("/metrics", "/ready", "/live"):
        assert (await http_get(edge.http_port, page))[0] == 200, page
        assert (await http_get(edge.debug_port, page))[0] == 404, page


async def test_an_edge_without_the_sealing_key_keeps_serving_the_previous_version(bus, make_edge) -> None:
    ledger = LedgerWriter(bus)
    # Version 1 as a version before sealing stored it: its Secret plain, accepted as it hashes right.
    v1 = await base_config(ledger).commit()
    ledger.publisher.secret_box = KEYRING
    edge = await make_edge(keyring=OTHER)
    keyless = await make_edge()
    await serving(edge, v1)
    await serving(keyless, v1)
    v2 = await ledger.put(cla("a", "10.9.9.9"), secret("s2", PRIVATE)).commit()

    for each, needs in ((edge, f"which the keyring ({OTHER.kid}) lacks"), (keyless, "no keyring")):

        async def rejected(each=each) -> dict | None:
            status = json.loads((await http_get(each.debug_port, "/debug/scopez"))[1])["default"]
            return status if status["last_error_version"] == v2 else None

        status = await eventually(rejected, what=f"version {v2} not served")
        assert status["serving"] == v1
        assert "cannot open Secret 's2'" in status["last_error"] and needs in status["last_error"]
        assert "XDSBUS_SECRET_KEY" in status["last_error"]
        metrics = (await http_get(each.http_port, "/metrics"))[1]
        assert 'xdsbus_edge_versions_not_opened{scope="default"} 1' in metrics
        snap = each.cache.current("default")
        assert snap is not None and snap.version == v1 and "s2" not in snap.of(SECRET)
        assert snap.of(ENDPOINT)["a"].sha256 != ledger.sha(ENDPOINT, "a")  # nothing of v2, not even a part


def test_debug_pages_default_to_loopback(monkeypatch) -> None:
    monkeypatch.delenv("XDSBUS_DEBUG_LISTEN", raising=False)
    args = parse_args(["--xds-listen", "127.0.0.1:18000", "--xds-plaintext", "true"])
    assert args.debug_listen == "127.0.0.1:15016" and args.http_listen == "0.0.0.0:15014"
    assert EdgeConfig().debug_listen.startswith("127.0.0.1:")
