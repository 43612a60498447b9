"""A large object through the builder (docs/design.md §4): a Service whose body is over a message's size
is claim-checked by its watcher, and the builder's consumer loop reads it back and translates it; one
over the cap is refused without holding up the next."""

from __future__ import annotations

import os

from tests.builder.support import cluster, resources_at, running_builder, wait_for_caught_up
from tests.support.objects import service
from tests.support.sources import ScriptedSource
from tests.watch_file.conftest import EventLog
from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.type_urls import CLUSTER
from xdsbus.events import MAX_BODY_BYTES, Op
from xdsbus.fold.reading import last_event_seq

MIB = 1024 * 1024


def padded_service(name: str, size: int) -> dict[str, object]:
    """A Service carrying an annotation of `size` random hex digits (which do not compress)."""
    obj = service(name)
    obj["metadata"]["annotations"] = {"padding": os.urandom(size // 2).hex()}
    return obj


async def clusters(bus: Bus) -> set[str]:
    head = await wait_for_caught_up(bus)
    return {key.name for key in await resources_at(bus, head.version) if key.type_url == CLUSTER}


async def test_the_builder_translates_a_claim_checked_service(bus: Bus) -> None:
    src = ScriptedSource(bus)
    async with running_builder(bus):
        await src.put(padded_service("big", 2 * MIB))
        await src.put(padded_service("huge", MAX_BODY_BYTES + MIB))
        await src.put(service("small"))
        found = await clusters(bus)

    log = EventLog(bus)
    assert {e.key for e in await log.read() if e.op is Op.UPSERT and e.body_ref is not None} == {
        "default/big"
    }
    assert await last_event_seq(bus) == 2  # huge was never published
    assert found == {cluster("big"), cluster("small")}
    status = await status_store.read(bus, "Service", src.source, "default/huge")
    assert status is not None and str(MAX_BODY_BYTES) in status.reason
