"""Term records (docs/design.md §5, fencing), with a real nats-server: a new leader's term record shuts
out the former leader's next publish, and every reader skips term records."""

from __future__ import annotations

import hashlib

import pytest

from xdsbus.bus import Bus
from xdsbus.contract import digest
from xdsbus.contract.resources import Changes, Resource, ResourceKey
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.ledger import reader
from xdsbus.ledger.publisher import LedgerPublisher, LostLedger

SCOPE = "default"


def _changes(name: str) -> tuple[Changes, str]:
    body = name.encode()
    res = Resource(hashlib.sha256(body).hexdigest(), body)
    key = ResourceKey(CLUSTER, name)
    return Changes(changed=[(key, res)], removed=[]), digest.digest_of(
        digest.CURRENT, [(key.type_url, key.name, res.sha256)]
    )


async def _publish(publisher: LedgerPublisher, version: int, name: str) -> None:
    changes, dig = _changes(name)
    await publisher.publish(
        version=version,
        first_seq=publisher.head_version + 1,
        changes=changes,
        digest=dig,
        resource_count=1,
    )


async def _successor(bus: Bus, term: int, holder: str) -> LedgerPublisher:
    """A new leader as the builder starts one: adopt the tip, then publish its term record."""
    tip = await reader.tip(bus, SCOPE)
    publisher = LedgerPublisher(bus, SCOPE, "t")
    publisher.adopt_head(tip.last_stream_seq, tip.head.record.version if tip.head else 0)
    await publisher.publish_term(term, holder)
    return publisher


async def test_a_term_record_refuses_the_former_leaders_next_publish(bus: Bus) -> None:
    former = await _successor(bus, 1, "a")
    await _publish(former, 3, "one")

    successor = await _successor(bus, 7, "b")
    with pytest.raises(LostLedger):
        await _publish(former, 5, "two")
    # Even a version number the successor has not used is refused: the fence is the sequence.
    await _publish(successor, 4, "three")

    tip = await reader.tip(bus, SCOPE)
    assert tip.head is not None and tip.head.record.version == 4
    assert tip.head.record.parent == 3, "a term record is not a version: the parent skips it"
    holders = [
        (e.record.term.holder, e.record.term.term) if reader.is_term(e.record) else e.record.version
        async for e in reader.records(bus, SCOPE)
    ]
    assert holders == [("a", 1), 3, ("b", 7), 4]
    assert [e.record.version async for e in reader.entries(bus, SCOPE)] == [3, 4]


async def test_readers_find_the_head_behind_term_records(bus: Bus) -> None:
    assert await reader.head(bus, SCOPE) is None
    await _successor(bus, 1, "a")
    tip = await reader.tip(bus, SCOPE)
    assert tip.head is None and tip.last_stream_seq > 0, "a lone term record is no version"

    first = await _successor(bus, 2, "b")
    await _publish(first, 10, "one")
    # Two leaders in a row that publish nothing: the head is found through both term records.
    await _successor(bus, 3, "c")
    await _successor(bus, 4, "d")
    head = await reader.head(bus, SCOPE)
    assert head is not None and head.record.version == 10 and not reader.is_term(head.record)
    assert (await reader.find(bus, SCOPE, 10)).record.version == 10
    assert set(await reader.resource_set(bus, SCOPE, 10)) == {ResourceKey(CLUSTER, "one")}


async def test_a_term_record_after_a_publish_it_did_not_see_is_refused(bus: Bus) -> None:
    """A successor whose restore missed a version cannot start its term: it would lead from a stale head."""
    former = await _successor(bus, 1, "a")
    stale = await reader.tip(bus, SCOPE)
    await _publish(former, 3, "one")
    late = LedgerPublisher(bus, SCOPE, "t")
    late.adopt_head(stale.last_stream_seq, 0)
    with pytest.raises(LostLedger):
        await late.publish_term(2, "b")
