"""Upgrading to the two-level digest (docs/design.md §5): a ledger written before records named their
digest algorithm stays verifiable, replayable, and continued by a new builder."""

from __future__ import annotations

from tests.builder.support import (
    SCOPE,
    cli,
    records,
    resources_at,
    running_builder,
    translate_whole_log,
    wait_for_caught_up,
)
from tests.support.objects import endpoint_slice, ingress, service
from tests.support.sources import ScriptedSource
from xdsbus.contract import digest
from xdsbus.fold.reading import last_event_seq
from xdsbus.ledger import reader
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.translate.settings import TranslatorSettings


async def test_a_ledger_from_before_digests_named_their_algorithm(bus, nats_server):
    src = ScriptedSource(bus)
    await src.put(service("a"))
    await src.put(endpoint_slice("a", ["10.0.0.1"]))
    await src.put(ingress("web", "shop.example.com", "a", path="/"))
    seq = await last_event_seq(bus)
    # The head an older builder left: the sha256-lines-v1 digest and no digest_algorithm.
    settings = TranslatorSettings()
    table = (await translate_whole_log(bus, seq, settings)).table
    old_digest = digest.lines_digest((k.type_url, k.name, r.sha256) for k, r in table.items())
    await LedgerPublisher(bus, SCOPE, settings.describe()).publish(
        version=seq,
        first_seq=1,
        changes=table.commit(),
        digest=old_digest,
        resource_count=len(table),
        digest_algorithm="",
    )
    (old,) = await records(bus)
    assert old.digest_algorithm == "" and old.digest != table.digest()
    assert reader.digest_matches(old, await resources_at(bus, seq))

    shown = await cli(nats_server.url, "ledger", "show", str(seq), "--resources")
    assert (shown["digest_algorithm"], shown["digest_verified"]) == (digest.LINES_V1, True)
    replayed = await cli(nats_server.url, "replay", "--seq", str(seq))
    assert (replayed["digest"], replayed["digest_algorithm"]) == (old_digest, digest.LINES_V1)

    # A new builder restores from that head (verifying it by its own algorithm) and continues with
    # the two-level digest, publishing only what changed.
    async with running_builder(bus):
        await src.put(endpoint_slice("a", ["10.0.0.2"]))
        new = await wait_for_caught_up(bus)
    assert (new.parent, new.changed_count, new.removed_count) == (seq, 1, 0)
    assert new.digest_algorithm == digest.BUCKETS_4096_V1
    assert reader.digest_matches(new, await resources_at(bus, new.version))
    shown = await cli(nats_server.url, "ledger", "show", str(new.version), "--resources")
    assert (shown["digest_algorithm"], shown["digest_verified"]) == (digest.BUCKETS_4096_V1, True)
    replayed = await cli(nats_server.url, "replay", "--seq", str(new.version))
    assert replayed["digest"] == new.digest
