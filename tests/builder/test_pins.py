"""Rollback as an event (docs/design.md §5, docs/rollback.md), with an in-process builder on a real
nats-server: `xdsbus rollback V` makes a version with V's resources and digest; the scope then folds on
without publishing, through a restart, and `xdsbus status` shows what it would serve unpinned; a replay
reproduces the pinned and the released versions; `xdsbus unpin` publishes the fold's head. Pins the
builder cannot serve are refused before they are published, and refused by the builder when published
anyway. Also the builder's pure steps (pinning.py)."""

from __future__ import annotations

from typing import Any

from tests.builder.support import (
    SCOPE,
    assert_chain,
    cli,
    head_version,
    records,
    resources_at,
    run_cli,
    running_builder,
    wait_for_caught_up,
    wait_for_version,
)
from tests.support.objects import endpoint_slice, ingress, service
from tests.support.sources import ScriptedSource
from xdsbus import status_store
from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract.pins import PIN_STATUS_KIND, Pin
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import pin_requests, reader
from xdsbus.replay import replay_to
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_builder.pinning import PinnedScope, Step, release_mark, step
from xdsbus_dev.harness.processes import eventually


async def pin_status(bus: Bus, folded: int = 0, event_seq: int = 0) -> ObjectStatus:
    """The scope's LedgerPin status once the builder reported the pin event `event_seq` and folded up to
    `folded`."""

    async def probe() -> ObjectStatus | None:
        status = await status_store.read(bus, PIN_STATUS_KIND, f"builder/{SCOPE}", SCOPE)
        if status is None or status.pin is None:
            return None
        if status.pin.event_seq < event_seq or status.pin.folded_seq < folded:
            return None
        return status

    return await eventually(probe, timeout=20, what=f"the pin status at event {event_seq}, folded {folded}")


async def replay(bus: Bus, seq: int) -> Any:
    return (await replay_to(bus, SCOPE, seq, TranslatorSettings()))[0]


async def test_rollback_pins_folds_on_through_a_restart_and_unpin_follows_the_head(bus, nats_server):
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.put(service("shop"))
        await src.put(endpoint_slice("shop", ["10.0.0.1"]))
        await src.put(ingress("shop", "shop.example.com", "shop"))
        good = await wait_for_caught_up(bus)
        await src.put(endpoint_slice("shop", ["10.0.0.2"]))
        bad = await wait_for_caught_up(bus)

        out = await cli(
            nats_server.url, "rollback", str(good.version), "--operator", "ana", "--reason", "bad endpoints"
        )
        assert out["status"]["state"] == "accepted", out
        pinned = await wait_for_version(bus, out["event_seq"])
        assert pinned.version == out["event_seq"] and pinned.parent == bad.version
        assert pinned.digest == good.digest and pinned.digest_algorithm == good.digest_algorithm
        assert (pinned.pin.target, pinned.pin.operator, pinned.pin.via, pinned.pin.reason) == (
            good.version,
            "ana",
            "operator/cli",
            "bad endpoints",
        )
        assert await resources_at(bus, pinned.version) == await resources_at(bus, good.version)

        # Pinned, the builder folds on and publishes nothing; the status shows what it would serve.
        await src.put(endpoint_slice("shop", ["10.0.0.3"]))
        folded = await last_event_seq(bus)
        status = await pin_status(bus, folded=folded)
        assert status.state is Verdict.ACCEPTED and status.pin is not None
        assert (status.pin.target, status.pin.by, status.pin.serving_version) == (
            good.version,
            "ana",
            pinned.version,
        )
        assert status.pin.serving_digest == good.digest
        assert status.pin.unpinned_digest not in (good.digest, bad.digest)
        assert await head_version(bus) == pinned.version

    # A restart keeps the pin: restored from the ledger and the checkpoint, it still publishes nothing.
    async with running_builder(bus, instance_id="second"):
        await src.put(endpoint_slice("shop", ["10.0.0.4"]))
        folded = await last_event_seq(bus)
        status = await pin_status(bus, folded=folded)
        assert status.pin is not None and status.pin.serving_version == pinned.version
        assert await head_version(bus) == pinned.version
        # A replay reproduces the pin, at the pinned version and after it.
        for seq in (pinned.version, folded):
            replayed = await replay(bus, seq)
            assert (replayed.digest, replayed.pinned_to) == (good.digest, good.version), seq
        assert replayed.unpinned_digest == status.pin.unpinned_digest
        text = await cli(nats_server.url, "status", f"{PIN_STATUS_KIND}/{SCOPE}", as_json=False)
        assert f"pinned to version {good.version} by ana" in text, text

        out = await cli(nats_server.url, "unpin", "--operator", "bo")
        assert out["status"]["state"] == "accepted" and "released by bo" in out["status"]["reason"]
        released = await wait_for_version(bus, out["event_seq"])
        assert released.digest == status.pin.unpinned_digest
        assert (released.pin.target, released.pin.operator) == (0, "bo")
        replayed = await replay(bus, released.version)
        assert replayed.digest == released.digest and replayed.pinned_to == 0

    recs = await records(bus)
    assert_chain(recs)
    assert [(r.version, r.HasField("pin")) for r in recs[-3:]] == [
        (bad.version, False),
        (pinned.version, True),
        (released.version, True),
    ]


async def test_pins_the_builder_cannot_serve_are_refused(bus, nats_server):
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.put(service("shop"))
        await src.put(endpoint_slice("shop", ["10.0.0.1"]))
        first = await wait_for_caught_up(bus)
        await src.put(endpoint_slice("shop", ["10.0.0.2"]))
        second = await wait_for_caught_up(bus)

        # The same body again changes nothing: its sequence is no version.
        await src.put(endpoint_slice("shop", ["10.0.0.2"]))
        none = await last_event_seq(bus)

        # The command checks before it publishes: not a version, a derived scope.
        rc, _, err = await run_cli(nats_server.url, "rollback", str(none))
        assert rc == 2 and f"version {none} is not a version of scope 'default'" in err, err
        rc, _, err = await run_cli(nats_server.url, "rollback", "1", "--scope", "gateway.ns.gw")
        assert rc == 2 and "derived scope" in err, err

        # Published anyway (by another tool): the builder refuses it and keeps its head, publishing
        # nothing until the next pin or unpin.
        seq = await pin_requests.publish(bus, SCOPE, version=none, by="eve", tool="script")
        status = await pin_status(bus, event_seq=seq)
        assert (
            status.state is Verdict.REJECTED and f"version {none} is not a version of scope" in status.reason
        )
        await src.put(endpoint_slice("shop", ["10.0.0.3"]))

        # Records older than the history window are gone: pinning them is refused by name.
        kept = (await reader.find(bus, SCOPE, second.version)).stream_seq
        await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject(SCOPE), seq=kept)
        refusal = await _refusal(bus, first.version)
        assert f"version {first.version} of scope 'default' is older than the history window" in refusal

        # Released, the scope publishes what it folded meanwhile, right after the version it kept.
        seq = await pin_requests.publish(bus, SCOPE, version=0, by="eve", tool="script")
        released = await wait_for_version(bus, seq)
        assert released.parent == second.version and released.pin.operator == "eve"


async def _refusal(bus: Bus, version: int) -> str:
    try:
        await pin_requests.check_version(bus, SCOPE, version)
    except pin_requests.PinRefused as exc:
        return str(exc)
    raise AssertionError(f"a pin to {version} was accepted")


def test_a_flush_serves_a_new_pin_once_then_holds_and_follows_after_the_release() -> None:
    pin = Pin(version=7, by="ana", via="operator/cli", seq=10)
    assert step(None, None, None) is Step.FOLLOW
    assert step(pin, None, None) is Step.SERVE
    assert step(pin, pin, None) is Step.HOLD
    # A refused pin is not tried again at every flush; a new pin event is.
    assert step(pin, None, pin) is Step.HOLD
    assert step(Pin(version=7, by="ana", via="operator/cli", seq=12), pin, None) is Step.SERVE
    assert step(Pin(version=0, seq=13), pin, None) is Step.FOLLOW


def test_the_release_marks_the_version_its_event_is_folded_into() -> None:
    release = Pin(version=0, by="ana", via="operator/cli", seq=12)
    assert release_mark(release, 11, 14) is not None
    mark = release_mark(release, 12, 12)
    assert mark is not None and (mark.target, mark.operator, mark.event_seq) == (0, "ana", 12)
    assert release_mark(release, 13, 20) is None, "a later version is the fold's own"
    assert release_mark(Pin(version=7, seq=12), 11, 14) is None
    assert release_mark(None, 1, 14) is None


def test_the_status_names_the_pin_what_is_served_and_the_unpinned_head() -> None:
    pinned = PinnedScope(bus=None, scope="default", secret_box=None)  # type: ignore[arg-type]
    pinned.head_digest = "ab" * 32
    table = ResourceTable()
    table.put("type.googleapis.com/envoy.config.cluster.v3.Cluster", "c", b"\x0a\x01c")
    pin = Pin(version=7, by="ana", via="operator/cli", seq=10)
    pinned.served = pin
    status = pinned.status(pin, table, head=10, folded_seq=15)
    assert status is not None and status.state is Verdict.ACCEPTED and status.pin is not None
    assert (status.kind, status.source, status.key) == ("LedgerPin", "builder/default", "default")
    assert status.pin.target == 7 and status.pin.by == "ana" and status.pin.serving_version == 10
    assert status.pin.unpinned_digest == table.digest() and status.pin.unpinned_resources == 1
    assert status.pin.folded_seq == 15
    assert "pinned to version 7 by ana (operator/cli, event 10)" in status.reason
    # Unchanged, it is not written again; a new folded event changes it.
    assert pinned.changed_status(pin, table, 10, 15) is not None
    assert pinned.changed_status(pin, table, 10, 15) is None
    assert pinned.changed_status(pin, table, 10, 16) is not None

    pinned.refused, pinned.refusal = pin, "version 7 is not a version of scope 'default'"
    refused = pinned.status(pin, table, head=10, folded_seq=15)
    assert refused is not None and refused.state is Verdict.REJECTED
    assert "refused: version 7 is not a version" in refused.reason and "keeps version 10" in refused.reason

    release = Pin(version=0, by="bo", via="operator/console", seq=20)
    released = pinned.status(release, table, head=21, folded_seq=25)
    assert released is not None and released.state is Verdict.ACCEPTED
    assert released.reason.startswith("not pinned: released by bo")
    assert released.pin is not None and released.pin.folded_seq == 0, "a release is written once"
    assert pinned.status(None, table, head=21, folded_seq=25) is None
