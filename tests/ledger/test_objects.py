"""read_object: Object Store objects read through a pull consumer, as nats-py's own get would return them."""

from __future__ import annotations

import hashlib
import os

import pytest
from nats.js.errors import DigestMismatchError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_DEFAULT_CHUNK_SIZE, OBJ_STREAM_TEMPLATE

from xdsbus import objects
from xdsbus.bus import LARGE_RESOURCES_STORE, Bus
from xdsbus.contract.resources import Resource
from xdsbus.ledger.store import fetch_body, store_bodies
from xdsbus.objects import read_object

STREAM = OBJ_STREAM_TEMPLATE.format(bucket=LARGE_RESOURCES_STORE)


@pytest.mark.parametrize(
    "size",
    [
        0,
        1,
        OBJ_DEFAULT_CHUNK_SIZE,
        OBJ_DEFAULT_CHUNK_SIZE + 1,
        # More chunks than one pull request asks for, and past nats-py's flow-control threshold (~2 MiB).
        objects.WINDOW * OBJ_DEFAULT_CHUNK_SIZE + 5,
    ],
)
async def test_reads_what_nats_py_reads(bus: Bus, size: int) -> None:
    data = os.urandom(size)
    await bus.large_resources.put("obj", data)
    assert await read_object(bus.js, bus.large_resources, "obj") == data
    assert (await bus.large_resources.get("obj")).data == data


async def test_leaves_no_consumer_behind(bus: Bus) -> None:
    await bus.large_resources.put("obj", os.urandom(3 * OBJ_DEFAULT_CHUNK_SIZE))
    for _ in range(3):
        await read_object(bus.js, bus.large_resources, "obj")
    assert (await bus.js.stream_info(STREAM)).state.consumer_count == 0


async def test_a_replaced_object_reads_its_new_content(bus: Bus) -> None:
    await bus.large_resources.put("obj", b"a" * (OBJ_DEFAULT_CHUNK_SIZE + 10))
    await bus.large_resources.put("obj", b"b" * 10)
    assert await read_object(bus.js, bus.large_resources, "obj") == b"b" * 10


async def test_missing_and_deleted_objects_are_not_found(bus: Bus) -> None:
    with pytest.raises(ObjectNotFoundError):
        await read_object(bus.js, bus.large_resources, "nope")
    await bus.large_resources.put("obj", b"data")
    await bus.large_resources.delete("obj")
    with pytest.raises(ObjectNotFoundError):
        await read_object(bus.js, bus.large_resources, "obj")


async def _chunk_subject(bus: Bus, name: str) -> str:
    info = await bus.large_resources.get_info(name)
    return OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=LARGE_RESOURCES_STORE, obj=info.nuid)


async def test_lost_chunks_are_not_found(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(objects, "WINDOW_TIMEOUT", 0.3)
    await bus.large_resources.put("obj", os.urandom(2 * OBJ_DEFAULT_CHUNK_SIZE))
    await bus.js.purge_stream(STREAM, subject=await _chunk_subject(bus, "obj"))
    with pytest.raises(ObjectNotFoundError):
        await read_object(bus.js, bus.large_resources, "obj")
    assert (await bus.js.stream_info(STREAM)).state.consumer_count == 0


async def test_altered_chunks_fail_the_digest(bus: Bus) -> None:
    await bus.large_resources.put("obj", b"x" * 100)
    subject = await _chunk_subject(bus, "obj")
    await bus.js.purge_stream(STREAM, subject=subject)
    await bus.js.publish(subject, b"y" * 100, stream=STREAM)
    with pytest.raises(DigestMismatchError):
        await read_object(bus.js, bus.large_resources, "obj")


async def test_fetch_body_reads_large_bodies(bus: Bus) -> None:
    body = os.urandom(3 * 1024 * 1024)
    resource = Resource(hashlib.sha256(body).hexdigest(), body)
    await store_bodies(bus, [resource])
    assert await fetch_body(bus, resource.sha256) == body
