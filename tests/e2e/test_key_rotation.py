"""Rotating the key that seals Secrets (docs/design.md §4, issue 12 point 7), with a real Envoy: TLS keeps
serving throughout, the ledger head (digest included) does not move, no listener is modified, removed or
drained; the new leader seals the ledger's Secret bodies again with the new key (same names, same
digest); after the re-seal the old key can go, a builder restarting from its checkpoint still serves TLS,
and an edge started with the new key alone serves the head."""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from pathlib import Path

import pytest

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.cli.main import main as xdsbus_main
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import SECRET
from xdsbus.ledger import checkpoints, reader
from xdsbus.ledger.store import fetch_stored, sealed_kid
from xdsbus.secretbox import KEY_ENV, KEY_FILE_ENV, decode_keys, key_id, read_key_file, write_key_file
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.envoy import terminate_process
from xdsbus_dev.harness.processes import Service
from xdsbus_dev.harness.stack import Edge, Stack, ingress_manifest, tls_secret_manifest

pytestmark = pytest.mark.slow

SHOP = "shop.example.com"
SECRET_KEY = "demo/shop-tls"
SOURCE = "file/e2e"
LISTENER_STATS = (
    "listener_manager.listener_modified",
    "listener_manager.listener_removed",
    "listener_manager.total_listeners_draining",
)


class Prober:
    """GETs over TLS through Envoy, one after another, until stopped: every answer must be a 200."""

    def __init__(self, stack: Stack, context: ssl.SSLContext) -> None:
        self.stack = stack
        self.context = context
        self.ok = 0
        self.failures: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                response = await self.stack.curl_tls("/x", SHOP, self.context)
                if response.status == 200 and response.json()["host"] == SHOP:
                    self.ok += 1
                else:
                    self.failures.append(f"status {response.status}")
            except OSError as exc:
                self.failures.append(repr(exc))
            await asyncio.sleep(0.02)

    async def __aenter__(self) -> Prober:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


async def restart(stack: Stack, name: str, key_file: Path, *extra: str) -> Service:
    """Stop the builder or watch-file (SIGTERM) and start it again with `key_file` as its keyring."""
    attribute = name.replace("-", "_")
    old: Service = getattr(stack, attribute)
    assert old.proc is not None
    stack.stopped.add(name)
    await terminate_process(old.proc)
    runs = len(list(stack.log_dir.glob(f"{name}*.log")))
    env = {KEY_ENV: "", KEY_FILE_ENV: str(key_file)}
    fresh = Service([*old.argv, *extra], stack.log_dir / f"{name}-{runs}.log", env=env).start()
    setattr(stack, attribute, fresh)
    stack.stopped.discard(name)
    return fresh


async def nudge(stack: Stack, bus: Bus, name: str) -> None:
    """Publish a ConfigMap (which translates to nothing) and wait for a checkpoint that holds it: the
    builder has then folded it and committed, so a Secret it could not open would have been withdrawn,
    changing the ledger and Envoy's listeners."""
    stack.write(
        f"{name}.yaml",
        [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "demo"}}],
    )

    async def committed() -> bool:
        checkpoint = await checkpoints.load_at_or_before(bus, "default")
        return checkpoint is not None and f"demo/{name}" in checkpoint.state.objects.get("ConfigMap", {}).get(
            SOURCE, {}
        )

    await stack.wait(committed, what=f"ConfigMap {name} folded and committed")


async def test_rotation_keeps_tls_serving_with_the_same_ledger_and_no_listener_drain(tmp_path: Path) -> None:
    ca = TestCA()
    cert = ca.issue(SHOP)
    # The stack starts with the suite's key (tests/conftest.py); the key file takes over from it.
    old_keys = decode_keys(os.environ[KEY_ENV].split(","), KEY_ENV)
    key_file = tmp_path / "keys"
    write_key_file(key_file, old_keys)
    async with Stack(tmp_path, edges=1, backends=("echo-a",), ingress=False) as stack:
        assert stack.envoy is not None
        envoy = stack.envoy
        ingress = ingress_manifest("shop", SHOP, [("/", "echo-a")])
        ingress["spec"]["tls"] = [{"hosts": [SHOP], "secretName": "shop-tls"}]
        stack.write("tls.yaml", [tls_secret_manifest("shop-tls", cert.cert_pem, cert.key_pem), ingress])
        context = ca.client_context()

        async def served() -> bool:
            response = await stack.curl_tls("/x", SHOP, context)
            return response.status == 200

        await stack.wait(served, what="shop over TLS")
        stats = {name: await envoy.stat(name) for name in LISTENER_STATS}
        async with stack.bus() as bus, Prober(stack, context) as prober:
            head = await reader.head(bus, "default")
            assert head is not None

            # Rotate: a new sealing key, the old one kept for opening. Openers (the builder) first.
            assert xdsbus_main(["keyring", "rotate", "--key-file", str(key_file)]) == 0
            new_kid, *old_kids = (key_id(key) for key in read_key_file(key_file))
            assert old_kids == [key_id(key) for key in old_keys]
            await restart(stack, "builder", key_file, "--checkpoint-events", "1")
            secret_shas = [
                sha
                for key, sha in (await reader.resource_set(bus, "default", head.record.version)).items()
                if key.type_url == SECRET
            ]
            assert secret_shas

            async def bodies_resealed() -> bool:
                """The new leader sealed the ledger's Secret bodies again, under the same names."""
                kids = [sealed_kid(await fetch_stored(bus, sha)) for sha in secret_shas]
                return kids == [new_kid] * len(secret_shas)

            await stack.wait(bodies_resealed, what="the ledger's Secret bodies sealed with the new key")
            await nudge(stack, bus, "after-builder-restart")
            await restart(stack, "watch-file", key_file)

            async def resealed() -> int:
                """The sequence of the newest checkpoint once it holds the Secret sealed with the new key."""
                checkpoint = await checkpoints.load_at_or_before(bus, "default")
                if checkpoint is None:
                    return 0
                held = checkpoint.state.objects.get("Secret", {}).get(SOURCE, {}).get(SECRET_KEY)
                if held is None or held.value().get("kid") != new_kid:
                    return 0
                assert held.rev.endswith("@" + new_kid)
                return checkpoint.state.seq

            resealed_at = await stack.wait(resealed, what="the Secret re-sealed, in a checkpoint")

            # Drop the old key; the builder restarts from that checkpoint and opens everything it holds.
            for old_kid in old_kids:
                assert xdsbus_main(["keyring", "drop", old_kid, "--key-file", str(key_file)]) == 0
            assert [key_id(key) for key in read_key_file(key_file)] == [new_kid]
            builder = await restart(stack, "builder", key_file, "--checkpoint-events", "1")

            async def restored_from() -> int:
                match = re.search(r"restored scope default: checkpoint at (\d+)", builder.output())
                return int(match.group(1)) if match else 0

            assert await stack.wait(restored_from, what="the builder's restore") >= resealed_at
            await nudge(stack, bus, "after-old-key-dropped")
            await stack.wait(served, what="shop over TLS after the restart")
            status = await status_store.read(bus, "Secret", SOURCE, SECRET_KEY)
            assert status is not None and status.state is Verdict.ACCEPTED, status
            after = await reader.head(bus, "default")
            assert after is not None
            assert (after.record.version, after.record.digest) == (head.record.version, head.record.digest)

            # An edge holding the new key alone opens every body of the head.
            fresh = Edge("edge-new-key", stack.nats.url, stack.log_dir, pki=stack.pki)
            fresh.service = Service(
                fresh.service.argv, fresh.service.log_path, env={KEY_ENV: "", KEY_FILE_ENV: str(key_file)}
            )
            fresh.start()
            try:
                await stack.wait(fresh.ready, what="an edge with the new key alone ready")
            finally:
                await fresh.stop()
        assert prober.failures == [] and prober.ok > 0, prober.failures[:5]
        assert {name: await envoy.stat(name) for name in LISTENER_STATS} == stats
