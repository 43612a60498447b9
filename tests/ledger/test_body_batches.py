"""Reading many resource bodies at once (ledger/store.py `fetch_stored_many`, ledger/direct_batch.py) on a
real nats-server: every stored body comes back, whatever the batch and answer sizes; a body not stored,
or deleted, is absent; a large body kept in the object store is found; and a bucket without direct gets
(a layout from before they were turned on) is still read, from the leader."""

from __future__ import annotations

import hashlib

import pytest

from xdsbus.bus import RESOURCES_BUCKET, Bus
from xdsbus.contract.resources import Resource
from xdsbus.ledger import direct_batch, store
from xdsbus.ledger.store import LARGE_BODY, fetch_stored_many, store_bodies


def body(n: int, size: int = 200) -> Resource:
    data = b"\x0a" + (f"cluster-{n}-".encode() * size)[:size]
    return Resource(hashlib.sha256(data).hexdigest(), data)


async def test_many_bodies_come_back_in_batches_and_missing_ones_are_absent(
    bus: Bus, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Batches of 7 subjects, answers cut after ~1 KB: several requests, several answers each.
    monkeypatch.setattr(store, "DIRECT_BATCH", 7)
    monkeypatch.setattr(direct_batch, "MAX_BYTES", 1000)
    bodies = [body(n) for n in range(60)]
    large = Resource(*(lambda d: (hashlib.sha256(d).hexdigest(), d))(b"\x0a" + b"L" * (LARGE_BODY + 1)))
    await store_bodies(bus, [*bodies, large])
    deleted = body(1000)
    await store_bodies(bus, [deleted])
    await bus.resources.delete(deleted.sha256)
    never = hashlib.sha256(b"never stored").hexdigest()

    wanted = [b.sha256 for b in bodies] + [large.sha256, deleted.sha256, never]
    found = await fetch_stored_many(bus, wanted)

    assert found == {b.sha256: b.body for b in [*bodies, large]}


@pytest.mark.parametrize(
    ("count", "size", "max_bytes"),
    [
        # Answers cut at about 1 KB: the rest is asked for again, request after request.
        (20, 200, 1000),
        # One request for a thousand subjects, answered whole.
        (1000, 64, direct_batch.MAX_BYTES),
    ],
    ids=["answers-cut-at-their-byte-limit", "a-thousand-subjects-in-one-request"],
)
async def test_every_stored_subject_is_answered(
    bus: Bus, monkeypatch: pytest.MonkeyPatch, count: int, size: int, max_bytes: int
) -> None:
    monkeypatch.setattr(direct_batch, "MAX_BYTES", max_bytes)
    bodies = [body(n, size=size) for n in range(count)]
    await store_bodies(bus, bodies)
    subjects = [f"$KV.{RESOURCES_BUCKET}.{b.sha256}" for b in bodies]

    got = await direct_batch.last_of(bus.nc, f"KV_{RESOURCES_BUCKET}", subjects)

    assert {subject: entry.data for subject, entry in got.items()} == {
        subject: b.body for subject, b in zip(subjects, bodies, strict=True)
    }


async def test_a_bucket_without_direct_gets_is_read_from_the_leader(bus: Bus) -> None:
    info = await bus.js.stream_info(f"KV_{RESOURCES_BUCKET}")
    info.config.allow_direct = False
    await bus.js.update_stream(info.config)
    bodies = [body(n) for n in range(20)]
    await store_bodies(bus, bodies)

    assert await direct_batch.last_of(bus.nc, f"KV_{RESOURCES_BUCKET}", ["$KV.x.y"]) == {}
    assert await fetch_stored_many(bus, [b.sha256 for b in bodies]) == {b.sha256: b.body for b in bodies}
