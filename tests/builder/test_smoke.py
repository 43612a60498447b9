import asyncio

from tests.support.objects import endpoint_slice, ingress, service
from tests.support.processes import eventually
from tests.support.sources import ScriptedSource
from xdsbus.ledger import reader
from xdsbus.replay import replay_to
from xdsbus.translate.settings import TranslatorSettings
from xdsbus_builder.builder import Builder, BuilderConfig


async def test_smoke(bus):
    src = ScriptedSource(bus)
    await src.put(service("a"))
    await src.put(endpoint_slice("a", ["10.0.0.1", "10.0.0.2"]))
    await src.put(ingress("i", "foo.com", "a"))
    stop = asyncio.Event()
    b = Builder(bus, BuilderConfig(instance_id="t1", debounce_quiet=0.05))
    task = asyncio.create_task(b.run(stop))

    async def head():
        h = await reader.head(bus, "default")
        return h if h and h.record.version == 3 else None

    h = await eventually(head, what="version 3")
    print(h.record)
    await src.put(endpoint_slice("a", ["10.0.0.1"]))

    async def head4():
        h = await reader.head(bus, "default")
        return h if h and h.record.version == 4 else None

    h4 = await eventually(head4, what="version 4")
    print(h4.record)
    stop.set()
    await task
    r, _ = await replay_to(bus, "default", 3, TranslatorSettings())
    assert r.digest == h.record.digest
    r, _ = await replay_to(bus, "default", 4, TranslatorSettings())
    assert r.digest == h4.record.digest
