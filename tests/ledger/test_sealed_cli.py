"""A builder with a keyring seals Secret bodies in the ledger's body store (docs/design.md §5, §10): the KV
value holds no private key, a replay still equals live, and `xdsbus dump` / `ledger show --resources`
never print a private key unless `--reveal-secrets` is given with the keyring."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

from tests.builder.support import cli, run_cli, running_builder, wait_for_caught_up
from tests.builder.test_replay import CA, tls_secret
from tests.support.objects import ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.bus import Bus
from xdsbus.contract.type_urls import SECRET
from xdsbus.ledger import reader
from xdsbus.ledger.store import fetch_stored, sealed_kid
from xdsbus.secretbox import SecretBox

SHOP = "shop.example.com"


async def test_sealed_ledger_secrets_replay_and_redacted_dumps(bus: Bus, nats_server, tmp_path: Path) -> None:
    pair = CA.issue(SHOP)
    key_body = pair.key_pem.decode().strip().splitlines()[1]  # a line of the private key's base64
    box = SecretBox.from_env()
    src = ScriptedSource(bus)
    src.secret_box = box
    async with running_builder(bus, secret_box=box):
        await src.put(service("a"))
        await src.put(tls_secret("cert", pair))
        tls_ingress = ingress("web", SHOP, "a")
        tls_ingress["spec"]["tls"] = [{"hosts": [SHOP], "secretName": "cert"}]
        await src.put(tls_ingress)
        version = (await wait_for_caught_up(bus)).version

    # The body store holds the Secret sealed, under the sha256 of its plaintext.
    head = await reader.head(bus, "default")
    assert head is not None and head.record.version == version
    resources = await reader.resource_set(bus, "default", version)
    secrets = {k.name: sha for k, sha in resources.items() if k.type_url == SECRET}
    assert secrets, "the builder published no Secret"
    for sha in secrets.values():
        stored = await fetch_stored(bus, sha)
        assert b"PRIVATE KEY" not in stored and key_body.encode() not in stored
        assert sealed_kid(stored) == box.kid

    # Replay equals live with sealed bodies.
    url = nats_server.url
    shown = await cli(url, "ledger", "show", str(version), "--resources")
    assert shown["digest_verified"] is True
    assert (await cli(url, "replay", "--seq", str(version)))["digest"] == shown["digest"]
    assert {r["name"]: r["sealed_kid"] for r in shown["resource_list"] if r["type_url"] == SECRET} == {
        name: box.kid for name in secrets
    }
    assert key_body not in json.dumps(shown)

    def secrets_json(directory: Path) -> str:
        return (directory / "secrets.json").read_text()

    def private_key(directory: Path) -> str:
        (secret,) = json.loads(secrets_json(directory))["resources"]
        source = secret["tls_certificate"]["private_key"]
        if "inline_bytes" in source:
            return base64.b64decode(source["inline_bytes"]).decode()
        return str(source["inline_string"])

    # With the key: certificates shown, private keys redacted.
    redacted = tmp_path / "redacted"
    await cli(url, "dump", str(redacted))
    text = secrets_json(redacted)
    assert private_key(redacted) == "[redacted]" and "certificate_chain" in text
    replayed = tmp_path / "replayed"
    await cli(url, "replay", "--seq", str(version), "--dump", str(replayed))
    assert secrets_json(replayed) == text

    # --reveal-secrets with the key: the private key in clear.
    revealed = tmp_path / "revealed"
    await cli(url, "dump", str(revealed), "--reveal-secrets")
    assert key_body in private_key(revealed)

    # Without the key: the Secret shows as sealed, naming its key; --reveal-secrets is refused.
    keyless_env = {k: v for k, v in os.environ.items() if not k.startswith("XDSBUS_SECRET_KEY")}
    keyless = tmp_path / "keyless"
    await cli(url, "dump", str(keyless), cwd=tmp_path, env=keyless_env)
    (entry,) = json.loads(secrets_json(keyless))["resources"]
    assert entry["sealed"] == {"kid": box.kid} and entry["name"] in secrets
    assert "certificate_chain" not in secrets_json(keyless)
    rc, _out, err = await run_cli(
        url, "dump", str(tmp_path / "no"), "--reveal-secrets", cwd=tmp_path, env=keyless_env
    )
    assert rc == 2 and "--reveal-secrets needs the keyring" in err, err
