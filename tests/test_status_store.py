"""KV xdsbus_status through a real nats-server: the key layout `<kind>.<source>/<key>`, a watch that
receives only the kinds it names, and entries of the earlier layout `<kind>/<source>/<key>` moved."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest
from nats.js.errors import KeyNotFoundError

from tests.builder.support import running_builder
from xdsbus import status_store
from xdsbus.bus import STATUS_BUCKET, Bus
from xdsbus.contract.status import (
    ObjectStatus,
    Verdict,
    is_legacy_status_key,
    status_key,
    status_kind_filter,
)
from xdsbus_dev.harness.processes import eventually

SOURCE = "k8s/a"


def _status(kind: str, key: str, source: str = SOURCE, reason: str = "") -> ObjectStatus:
    return ObjectStatus(kind=kind, source=source, key=key, state=Verdict.ACCEPTED, reason=reason)


def test_the_kind_is_a_subject_token_of_its_own() -> None:
    assert status_key("Gateway", "k8s/a", "shop/gw.v1") == "Gateway.k8s/a/shop/gw.v1"
    assert status_key("Event", "xdsbus.events.k8s.a.Ingress", "7") == "Event.xdsbus.events.k8s.a.Ingress/7"
    assert status_kind_filter("Gateway") == "Gateway.>"
    # A filter names whole tokens: Gateway's is no prefix of GatewayClass'.
    assert not status_key("GatewayClass", "k8s/a", "x").startswith("Gateway.")
    assert is_legacy_status_key("Gateway/k8s/a/shop/gw.v1")
    assert not is_legacy_status_key(status_key("Gateway", "k8s/a", "shop/gw.v1"))
    assert not is_legacy_status_key("source.file.config.a.yaml")  # watch-file's own earlier layout


async def _next(statuses: AsyncIterator[ObjectStatus]) -> ObjectStatus:
    return await asyncio.wait_for(anext(statuses), timeout=5)


async def test_a_watch_receives_only_the_kinds_and_source_it_names(bus: Bus) -> None:
    await status_store.publish(
        bus,
        [
            _status("Ingress", "shop/web"),
            _status("GatewayClass", "higress"),
            _status("Gateway", "shop/gw"),
            _status("Gateway", "shop/gw", source="k8s/b"),
            _status("HTTPRoute", "shop/r"),
        ],
    )
    statuses = status_store.watch(bus, ["Gateway", "HTTPRoute"], SOURCE)
    try:
        stored = {(s.kind, s.key) for s in [await _next(statuses), await _next(statuses)]}
        assert stored == {("Gateway", "shop/gw"), ("HTTPRoute", "shop/r")}
        await status_store.publish(bus, [_status("Ingress", "shop/web2"), _status("HTTPRoute", "shop/r2")])
        assert (await _next(statuses)).key == "shop/r2"
    finally:
        await statuses.aclose()  # type: ignore[attr-defined]


async def test_entries_of_the_earlier_layout_are_moved_once(bus: Bus) -> None:
    old = _status("Ingress", "shop/web.v1", reason="old")
    await bus.status.put("Ingress/k8s/a/shop/web.v1", msgspec.json.encode(old))
    # Written anew since, under the new key: the moved entry must not overwrite it.
    await bus.status.put(
        "Service/k8s/a/shop/web", msgspec.json.encode(_status("Service", "shop/web", reason="old"))
    )
    await status_store.put(bus, _status("Service", "shop/web", reason="new"))
    await bus.status.put("Ingress/k8s/a/shop/junk", b"not json")
    await bus.status.put("Ingress/k8s/a/shop/gone", msgspec.json.encode(_status("Ingress", "shop/gone")))
    await bus.status.delete("Ingress/k8s/a/shop/gone")

    assert await status_store.migrate_legacy_keys(bus) == 1
    assert await status_store.read_all(bus) == [
        _status("Ingress", "shop/web.v1", reason="old"),
        _status("Service", "shop/web", reason="new"),
    ]
    assert await status_store.read(bus, "Ingress", SOURCE, "shop/web.v1") == old
    for key in ("Ingress/k8s/a/shop/web.v1", "Service/k8s/a/shop/web"):
        with pytest.raises(KeyNotFoundError):
            await bus.status.get(key)
    # Purged, not deleted: nothing of them is left to look at again.
    assert [key for key in await status_store._keys(bus, "") if is_legacy_status_key(key)] == [
        "Ingress/k8s/a/shop/junk"
    ]
    assert (await bus.status.get("Ingress/k8s/a/shop/junk")).value == b"not json"  # not ours: left
    sequence = (await bus.js.stream_info(f"KV_{STATUS_BUCKET}")).state.last_seq
    assert await status_store.migrate_legacy_keys(bus) == 0
    assert (await bus.js.stream_info(f"KV_{STATUS_BUCKET}")).state.last_seq == sequence, "wrote again"


async def test_a_leading_builder_moves_entries_of_the_earlier_layout(bus: Bus) -> None:
    report = _status("File", "a.yaml", source="file/config", reason="line 3: bad")
    await bus.status.put("File/file/config/a.yaml", msgspec.json.encode(report))
    async with running_builder(bus):
        moved = await eventually(
            lambda: status_store.read(bus, "File", "file/config", "a.yaml"), what="the entry moved"
        )
        assert moved == report
    with pytest.raises(KeyNotFoundError):
        await bus.status.get("File/file/config/a.yaml")
