"""An edge starts from the newest ledger base (docs/design.md §5): the records before it are not needed,
so with them purged it still serves the head, and a damaged newest base falls back to an older one."""

from __future__ import annotations

from tests.edge.envoy_resources import base_config, cla, names
from tests.edge.support import LedgerWriter, serving
from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.ledger import bases


async def _base(bus: Bus, ledger: LedgerWriter) -> int:
    """A base of the writer's newest version, as the builder writes one; its record's stream sequence."""
    seq = ledger.publisher.last_stream_seq
    await bases.save(
        bus,
        scope=ledger.scope,
        version=ledger.version,
        stream_seq=seq,
        digest=ledger.table.digest(),
        digest_algorithm=digests.CURRENT,
        resources=ledger.table.committed(),
    )
    return seq


async def test_an_edge_serves_the_head_from_a_base_with_every_earlier_record_purged(
    bus, ledger, make_edge, clients
):
    base_config(ledger)
    for i in range(5):
        ledger.put(cla("a", f"10.0.1.{i}"))
        await ledger.commit()
    base_seq = await _base(bus, ledger)
    ledger.remove(CLUSTER, "b")
    ledger.put(cla("a", "10.0.2.1"))
    head = await ledger.commit()
    await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject("default"), seq=base_seq)
    assert (await bus.js.stream_info(LEDGER_STREAM)).state.messages == 2

    edge = await make_edge()
    await serving(edge, head)
    proxy = clients("sotw", edge.xds_port)
    await proxy.request(CLUSTER)
    r = await proxy.recv()
    assert (r.version_info, names(r)) == (str(head), ["a"])
    await proxy.request(ENDPOINT, ["a"])
    eds = await proxy.recv()
    while eds.type_url != ENDPOINT:
        eds = await proxy.recv()
    assert "10.0.2.1" in str(eds.resources[0].value)

    # It follows on from there.
    ledger.put(cla("a", "10.0.3.1"))
    await serving(edge, await ledger.commit())


async def test_a_damaged_newest_base_falls_back_to_an_older_one(bus, ledger, make_edge):
    base_config(ledger)
    await ledger.commit()
    older_seq = await _base(bus, ledger)
    for i in range(3):
        ledger.put(cla("a", f"10.0.1.{i}"))
        await ledger.commit()
    await _base(bus, ledger)
    await bus.ledger_bases.put(bases.name_of("default", ledger.version), b"\x12\x03bad")
    ledger.put(cla("b", "10.0.4.4"))
    head = await ledger.commit()
    await bus.js.purge_stream(LEDGER_STREAM, subject=ledger_subject("default"), seq=older_seq)

    edge = await make_edge()
    await serving(edge, head)
    snapshot = edge.cache.current("default")
    assert snapshot is not None and snapshot.digest == ledger.table.digest()
