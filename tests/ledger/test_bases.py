"""Ledger bases (docs/design.md §5): their encoding, and readers starting from the newest usable base at
or before their target, with a real nats-server."""

from __future__ import annotations

import hashlib

import pytest
from nats.js.api import StreamInfo

from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest
from xdsbus.contract.resources import Changes, Resource, ResourceKey
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.ledger import bases, reader
from xdsbus.ledger.publisher import LedgerPublisher

SCOPE = "gateway.ns.gw"


def _resource(text: str) -> Resource:
    body = text.encode()
    return Resource(hashlib.sha256(body).hexdigest(), body)


class Ledger:
    """A scope's ledger written through the builder's publisher, with the resource set it holds."""

    def __init__(self, bus: Bus, scope: str = SCOPE) -> None:
        self.bus = bus
        self.scope = scope
        self.publisher = LedgerPublisher(bus, scope, "t")
        self.resources: dict[ResourceKey, str] = {}
        self.seqs: dict[int, int] = {}

    async def publish(self, version: int, changed: dict[str, str], removed: tuple[str, ...] = ()) -> None:
        changes = Changes(
            changed=[(ResourceKey(CLUSTER, name), _resource(text)) for name, text in changed.items()],
            removed=[ResourceKey(CLUSTER, name) for name in removed],
        )
        for key, res in changes.changed:
            self.resources[key] = res.sha256
        for key in changes.removed:
            self.resources.pop(key, None)
        await self.publisher.publish(
            version=version,
            first_seq=self.publisher.head_version + 1,
            changes=changes,
            digest=digest.digest_of(
                digest.CURRENT, [(k.type_url, k.name, s) for k, s in self.resources.items()]
            ),
            resource_count=len(self.resources),
        )
        self.seqs[version] = self.publisher.last_stream_seq

    async def base(self, version: int, resources: dict[ResourceKey, str]) -> None:
        record = (await reader.find(self.bus, self.scope, version)).record
        await bases.save(
            self.bus,
            scope=self.scope,
            version=version,
            stream_seq=self.seqs[version],
            digest=record.digest,
            digest_algorithm=record.digest_algorithm,
            resources=resources,
        )


def test_a_base_round_trips_and_is_checked_against_its_digest() -> None:
    resources = {ResourceKey(CLUSTER, "a"): "1" * 64, ResourceKey(ENDPOINT, "a"): "2" * 64}
    entries = [(k.type_url, k.name, s) for k, s in resources.items()]
    data = bases.encode(
        scope=SCOPE,
        version=7,
        stream_seq=3,
        digest=digest.digest_of(digest.CURRENT, entries),
        digest_algorithm=digest.CURRENT,
        resources=resources,
        time_unix_nano=5,
    )
    base = bases.decode(data)
    assert (base.scope, base.version, base.stream_seq, base.time_unix_nano) == (SCOPE, 7, 3, 5)
    assert base.resources == resources

    wrong = bases.encode(
        scope=SCOPE,
        version=7,
        stream_seq=3,
        digest=digest.digest_of(digest.CURRENT, entries[:1]),
        digest_algorithm=digest.CURRENT,
        resources=resources,
    )
    with pytest.raises(bases.BaseInvalid, match="digest"):
        bases.decode(wrong)
    with pytest.raises(bases.BaseInvalid):
        bases.decode(b"\xff\xff\xff")


def test_base_names_carry_the_scope_and_version() -> None:
    name = bases.name_of("gateway.ns.gw", 42)
    assert name == "gateway.ns.gw.00000000000000000042"
    assert bases.version_of("gateway.ns.gw", name) == 42
    assert bases.version_of("gateway.ns", name) is None
    assert bases.version_of("default", "default.seq-00000000000000000001") is None


async def test_a_reader_starts_from_the_newest_base_and_needs_no_record_before_it(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1", "b": "b1"})
    await ledger.publish(4, {"a": "a2"})
    at_4 = dict(ledger.resources)
    await ledger.base(4, at_4)
    await ledger.publish(6, {"c": "c1"}, removed=("b",))
    await ledger.publish(8, {"a": "a3"})
    expected = dict(ledger.resources)

    # Records before the base gone: the set at 8 is the base plus 6 and 8.
    await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject(SCOPE), seq=ledger.seqs[4])
    assert await reader.resource_set(bus, SCOPE, 8) == expected
    assert await reader.resource_set(bus, SCOPE, 4) == at_4
    with pytest.raises(reader.VersionNotFound):
        await reader.resource_set(bus, SCOPE, 2)


async def test_a_corrupt_or_mismatched_base_falls_back_to_an_older_one(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    await ledger.base(2, dict(ledger.resources))
    await ledger.publish(4, {"b": "b1"})
    at_4 = dict(ledger.resources)
    await ledger.publish(6, {"a": "a2"})
    expected = dict(ledger.resources)

    # A base of 4 whose entries are not version 4's (it names 4's digest, but holds another set).
    record = (await reader.find(bus, SCOPE, 4)).record
    wrong = {**at_4, ResourceKey(CLUSTER, "x"): "0" * 64}
    await bus.ledger_bases.put(
        bases.name_of(SCOPE, 4),
        bases.encode(
            scope=SCOPE,
            version=4,
            stream_seq=ledger.seqs[4],
            digest=record.digest,
            digest_algorithm=record.digest_algorithm,
            resources=wrong,
        ),
    )
    assert (await bases.newest_at_or_before(bus, SCOPE)).version == 2  # type: ignore[union-attr]
    assert await reader.resource_set(bus, SCOPE, 6) == expected

    # Damaged bytes: skipped the same way.
    await bus.ledger_bases.put(bases.name_of(SCOPE, 4), b"\x0a\xff")
    assert await reader.resource_set(bus, SCOPE, 6) == expected

    # A base that says it is version 4 but points at version 2's record is not trusted either.
    await ledger.base(4, at_4)
    assert (await bases.newest_at_or_before(bus, SCOPE)).version == 4  # type: ignore[union-attr]
    ledger.seqs[4] = ledger.seqs[2]
    await ledger.base(4, at_4)
    assert (await bases.newest_at_or_before(bus, SCOPE)).version == 2  # type: ignore[union-attr]


async def test_without_a_usable_base_purged_history_is_reported_not_guessed(bus: Bus) -> None:
    ledger = Ledger(bus)
    await ledger.publish(2, {"a": "a1"})
    await ledger.publish(4, {"b": "b1"})
    await ledger.publish(6, {"c": "c1"})
    await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject(SCOPE), seq=ledger.seqs[4])
    with pytest.raises(reader.HistoryPurged):
        await reader.resource_set(bus, SCOPE, 6)


async def test_the_newest_base_at_or_before_a_target(bus: Bus) -> None:
    ledger = Ledger(bus)
    for version in (2, 4, 6):
        await ledger.publish(version, {f"r{version}": "x"})
        await ledger.base(version, dict(ledger.resources))
    await ledger.publish(8, {"r8": "x"})
    found = [await bases.newest_at_or_before(bus, SCOPE, target) for target in (1, 2, 5, 8)]
    assert [b.version if b else None for b in found] == [None, 2, 4, 6]
    info: StreamInfo = await bus.js.stream_info(LEDGER_STREAM)
    assert info.state.messages == 4


async def test_find_searches_the_subject_among_term_records_and_other_scopes(bus: Bus) -> None:
    ledger = Ledger(bus)
    other = Ledger(bus, "default")
    await ledger.publish(2, {"a": "a1"})
    await other.publish(3, {"x": "x1"})
    await ledger.publisher.publish_term(1, "b")
    await ledger.publish(4, {"a": "a2"})
    await ledger.publish(6, {"a": "a3"})
    await ledger.publisher.publish_term(2, "c")
    await other.publish(7, {"x": "x2"})
    await ledger.publish(8, {"a": "a4"})
    for version in (2, 4, 6, 8):
        entry = await reader.find(bus, SCOPE, version)
        assert (entry.record.version, entry.stream_seq) == (version, ledger.seqs[version])
    assert (await reader.find(bus, "default", 7)).stream_seq == other.seqs[7]
    for missing in (1, 3, 5, 7, 9):
        with pytest.raises(reader.VersionNotFound):
            await reader.find(bus, SCOPE, missing)
    await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject(SCOPE), seq=ledger.seqs[6])
    assert (await reader.find(bus, SCOPE, 6)).record.version == 6
    with pytest.raises(reader.VersionNotFound):
        await reader.find(bus, SCOPE, 4)
