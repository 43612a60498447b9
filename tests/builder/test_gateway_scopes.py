"""The builder publishes each Gateway's derived scope (docs/design.md §5) from the same fold: same version
numbers as the shared scope, its own digest and ledger subject; a new term continues each derived ledger
from its head; a deleted Gateway's scope keeps its last version and its status says the Gateway is gone."""

from __future__ import annotations

from tests.builder.support import running_builder, translate_whole_log, wait_for_caught_up
from tests.support.sources import ScriptedSource
from tests.translate.gateway_api_objects import NS, backend, http_route, rule
from tests.translate.test_gateway_scopes import two_gateways
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.scopes import gateway_scope
from xdsbus.contract.status import Verdict
from xdsbus.ledger import reader
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.replay import replay_to
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_dev.harness.processes import eventually

A = gateway_scope(NS, "a")
B = gateway_scope(NS, "b")


async def derived_head(bus: Bus, scope: str, version: int) -> ledger_pb2.Version:
    """Until the derived scope's head is `version`."""

    async def probe() -> ledger_pb2.Version | None:
        head = await reader.head(bus, scope)
        return head.record if head is not None and head.record.version >= version else None

    return await eventually(probe, timeout=20, what=f"{scope} version {version}")


async def assert_scope_is_the_fold(bus: Bus, scope: str, version: int) -> None:
    """The derived scope's ledger at `version` holds what a fresh translation of the log gives."""
    translator = await translate_whole_log(bus, version, TranslatorSettings())
    translator.gateway_scopes.refresh()
    table = translator.gateway_scopes.table(scope)
    head = await reader.head(bus, scope)
    assert head is not None and head.record.digest == table.digest()
    assert await reader.resource_set(bus, scope, head.record.version) == {
        key: res.sha256 for key, res in table.items()
    }


async def test_derived_scopes_follow_the_fold_across_terms(bus: Bus) -> None:
    src = ScriptedSource(bus)
    async with running_builder(bus):
        for obj in two_gateways():
            await src.put(obj)
        shared = await wait_for_caught_up(bus)
        first_a = await derived_head(bus, A, shared.version)
        first_b = await derived_head(bus, B, shared.version)
        assert first_a.version == first_b.version == shared.version
        assert first_a.digest != first_b.digest != shared.digest
        await assert_scope_is_the_fold(bus, A, shared.version)
        # `xdsbus replay --scope gateway.<ns>.<name>` reproduces a derived version.
        replayed, _ = await replay_to(bus, B, shared.version, TranslatorSettings())
        assert (replayed.digest, replayed.resource_count) == (first_b.digest, first_b.resource_count)

    # A new term: the derived ledgers continue from their heads, and only what changed is published.
    async with running_builder(bus, instance_id="second"):
        await src.put(
            http_route(
                "route-a", [rule(backends=[backend("web-b")])], parents=[{"name": "a", "namespace": NS}]
            )
        )
        shared = await wait_for_caught_up(bus)
        second_a = await derived_head(bus, A, shared.version)
        assert second_a.parent == first_a.version and second_a.version == shared.version
        assert 0 < second_a.changed_count < second_a.resource_count
        await assert_scope_is_the_fold(bus, A, shared.version)
        head_b = await reader.head(bus, B)
        assert head_b is not None and head_b.record.version == first_b.version

        # Gateway b goes: its scope keeps its version, and its status says why.
        await src.remove("Gateway", f"{NS}/b")
        await wait_for_caught_up(bus)

        async def retired() -> str | None:
            status = await status_store.read(bus, "GatewayScope", "builder/default", B)
            return status.reason if status is not None and status.state == Verdict.REJECTED else None

        reason = await eventually(retired, timeout=20, what=f"{B} retired")
        assert reason.startswith(f"Gateway {NS}/b (test/scripted) is gone")
        assert f"keeps version {first_b.version}" in reason
        head_b = await reader.head(bus, B)
        assert head_b is not None and head_b.record.version == first_b.version
