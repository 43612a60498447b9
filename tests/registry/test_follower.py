"""BridgeFollower: McpBridge and Secrets from the event log, whatever source published them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from tests.registry.support import (
    BRIDGE_KEY,
    SYSTEM,
    Source,
    events_of,
    folded,
    mcpbridge,
    registry,
    secret,
    until,
)
from xdsbus.bus import Bus
from xdsbus.events import CLAIM_CHECK_BYTES, EVENTS_STREAM
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints
from xdsbus.registry.bridge_follower import BridgeFollower
from xdsbus.secretbox import SecretBox, is_sealed
from xdsbus_dev.harness.processes import eventually

NACOS_TYPES = {"nacos", "nacos2", "nacos3"}
BOX = SecretBox(b"k" * 32)
CHECKPOINT_SCOPE = "default"


@contextlib.asynccontextmanager
async def following(follower: BridgeFollower) -> AsyncIterator[BridgeFollower]:
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        await asyncio.wait_for(follower.ready.wait(), 10)
        yield follower
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def desired_becomes(follower: BridgeFollower, keys: set[str]) -> None:
    async def probe() -> bool:
        assert set(follower.desired()) == keys, sorted(follower.desired())
        return True

    await eventually(probe, timeout=10, what=f"desired registries {sorted(keys)}")


async def test_empty_log_is_caught_up_at_once_with_nothing_to_run(bus: Bus) -> None:
    async with following(BridgeFollower(bus, NACOS_TYPES)) as follower:
        assert follower.desired() == {}
        assert follower.generation == 1
        assert not follower.evidence, "no McpBridge event: the log says nothing about registries"


async def test_mcpbridge_from_file_and_k8s_sources_only_default_and_first_source_wins(bus: Bus) -> None:
    files = Source(bus, "file/examples")
    cluster = Source(bus, "k8s/prod")
    await files.put(
        mcpbridge(
            registry("nacos2", "a"),
            registry("consul", "c"),
            registry("static", "s", domain="10.0.0.1:80"),
            {"type": "nacos", "name": "bad", "port": "not a port"},
        )
    )
    await files.put(mcpbridge(registry("nacos", "other"), name="other"))
    await files.put(mcpbridge(registry("nacos", "elsewhere"), namespace="default"))

    async with following(BridgeFollower(bus, NACOS_TYPES)) as follower:
        # Read from the log before it was started; only the default McpBridge, only Nacos types, the
        # malformed entry left out.
        assert set(follower.desired()) == {"nacos2/a"}
        assert follower.desired()["nacos2/a"].domain == "a.example.com"
        assert follower.evidence
        first = follower.generation

        await cluster.put(mcpbridge(registry("nacos", "b")))
        await cluster.put(mcpbridge(registry("nacos3", "x")))
        # file/examples sorts before k8s/prod: its McpBridge stays in use.
        await asyncio.wait_for(follower.ready.wait(), 1)
        await files.put(mcpbridge(registry("nacos2", "a", port=9848)))
        await until(lambda: follower.desired()["nacos2/a"].port == 9848, "the port change")
        assert follower.generation > first

        await files.delete("McpBridge", BRIDGE_KEY)
        await desired_becomes(follower, {"nacos3/x"})

        # A resync of the k8s source that no longer lists the McpBridge removes it, as in the builder.
        epoch = await cluster.begin_sync(["McpBridge"])
        await cluster.end_sync(epoch, {"McpBridge": []})
        await desired_becomes(follower, set())


async def test_credentials_come_from_sealed_secrets_in_the_system_namespace(bus: Bus) -> None:
    cluster = Source(bus, "k8s/prod", secret_box=BOX)
    await cluster.put(mcpbridge(registry("nacos2", "a", authSecretName="nacos-auth")))
    await cluster.put(secret("nacos-auth", nacosUsername="alice", nacosPassword="s3cret"))
    await cluster.put(secret("nacos-auth", namespace="default", nacosUsername="mallory"))
    stored = [e for e in await events_of(bus, "k8s/prod", "Secret") if e.body is not None]
    assert stored and all(is_sealed(e.body) for e in stored), "Secrets rest sealed in the log"

    async with following(BridgeFollower(bus, NACOS_TYPES, secret_box=BOX)) as follower:
        creds = follower.credentials
        assert creds.get("nacos-auth", "nacosUsername") == "alice"
        assert creds.get("nacos-auth", "nacosPassword") == "s3cret"
        assert creds.get("nacos-auth", "consulToken") is None
        assert creds.get("missing", "nacosUsername") is None
        assert (f"{SYSTEM}/nacos-auth") in follower.state.objects["Secret"]["k8s/prod"]
        assert "default/nacos-auth" not in follower.state.objects["Secret"]["k8s/prod"]
        revision, generation = creds.revision("nacos-auth"), follower.generation

        # A rotated password is a new revision and a new generation: the registry using it restarts.
        await cluster.put(secret("nacos-auth", nacosUsername="alice", nacosPassword="n3w"))
        await follower.wait_changed(generation)
        assert creds.revision("nacos-auth") != revision
        assert creds.get("nacos-auth", "nacosPassword") == "n3w"

    # Without the key the sealed Secret cannot be opened: no credentials rather than garbage.
    async with following(BridgeFollower(bus, NACOS_TYPES, secret_box=SecretBox(b"x" * 32))) as other:
        assert other.credentials.get("nacos-auth", "nacosUsername") is None


async def checkpoint_now(bus: Bus, state: FoldState | None = None) -> int:
    """Save a checkpoint of `state` (default: the whole log folded) with the builder's own checkpoint
    code; its sequence."""
    state = state if state is not None else await folded(bus)
    snap = checkpoints.snapshot(
        scope=CHECKPOINT_SCOPE,
        translator_version="test",
        state=state,
        ledger_version=0,
        ledger_stream_seq=0,
        published={},
    )
    await checkpoints.save(bus, CHECKPOINT_SCOPE, snap.seq, await checkpoints.encode_snapshot(snap))
    return snap.seq


async def test_a_restart_after_the_mcpbridge_aged_out_starts_from_the_newest_checkpoint(bus: Bus) -> None:
    cluster = Source(bus, "k8s/prod", secret_box=BOX)
    await cluster.put(
        mcpbridge(registry("nacos2", "a", authSecretName="nacos-auth"), registry("consul", "c"))
    )
    await cluster.put(secret("nacos-auth", nacosUsername="alice"))
    await cluster.put(mcpbridge(registry("nacos", "other"), name="other"))
    seq = await checkpoint_now(bus)
    await cluster.put(secret("unrelated", namespace="default", x="y"))
    # Retention takes everything the checkpoint holds (docs/design.md §4): the log alone no longer
    # names any registry.
    await bus.js.purge_stream(EVENTS_STREAM, seq=seq + 1)
    assert (await bus.js.stream_info(EVENTS_STREAM)).state.first_seq == seq + 1

    async with following(BridgeFollower(bus, NACOS_TYPES, secret_box=BOX)) as follower:
        assert set(follower.desired()) == {"nacos2/a"}
        assert follower.evidence and not follower.gap
        assert follower.credentials.get("nacos-auth", "nacosUsername") == "alice"
        # Only what the follower reads is kept from the checkpoint.
        assert set(follower.state.objects) == {"McpBridge", "Secret"}
        assert set(follower.state.objects["McpBridge"]["k8s/prod"]) == {BRIDGE_KEY}

        # Events after the checkpoint are followed as before.
        await cluster.put(mcpbridge(registry("nacos2", "a"), registry("nacos3", "x")))
        await desired_becomes(follower, {"nacos2/a", "nacos3/x"})


async def test_events_missing_after_the_checkpoint_leave_the_follower_not_ready(bus: Bus) -> None:
    cluster = Source(bus, "k8s/prod", secret_box=BOX)
    await cluster.put(mcpbridge(registry("nacos2", "a")))
    seq = await checkpoint_now(bus)
    await cluster.put(mcpbridge(registry("nacos2", "b")))
    await cluster.put(secret("unrelated", namespace="default", x="y"))
    builder_state = await folded(bus)
    # The McpBridge change right after the checkpoint is gone: folding on would run a stale registry.
    await bus.js.purge_stream(EVENTS_STREAM, seq=seq + 2)

    follower = BridgeFollower(bus, NACOS_TYPES)
    stop = asyncio.Event()
    task = asyncio.create_task(follower.run(stop))
    try:
        await until(lambda: follower.gap, "the gap noticed")
        assert not follower.ready.is_set() and follower.generation == 0
        # A newer checkpoint (the builder's next one) covers the gap: the follower goes on from it.
        await checkpoint_now(bus, builder_state)
        await asyncio.wait_for(follower.ready.wait(), 10)
        assert set(follower.desired()) == {"nacos2/b"} and not follower.gap
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def test_a_claim_checked_mcpbridge_is_read_from_the_object_store(bus: Bus) -> None:
    files = Source(bus, "file/examples")
    big = mcpbridge(registry("nacos2", "a"))
    big["metadata"]["annotations"] = {"note": "x" * (CLAIM_CHECK_BYTES + 1)}
    await files.put(big)
    (stored,) = await events_of(bus, "file/examples", "McpBridge")
    assert stored.body_ref is not None, "the envelope went over the claim check size"

    async with following(BridgeFollower(bus, NACOS_TYPES)) as follower:
        assert set(follower.desired()) == {"nacos2/a"}
