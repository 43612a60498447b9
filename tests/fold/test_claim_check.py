"""Claim check (docs/design.md §4) on a real nats-server: a body too large for a message goes to the
Object Store, the event carries its reference, and every reader of the log folds the full body."""

from __future__ import annotations

import os
from typing import Any

import msgspec
import pytest

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import Verdict
from xdsbus.events import EVENTS_STREAM, MAX_BODY_BYTES, BodyRef, Event, Op, decode, encode, subject_for
from xdsbus.fold.reading import fold_until, last_event_seq
from xdsbus.fold.state import FoldState
from xdsbus.secretbox import SecretBox
from xdsbus.watcher import Watcher

SOURCE = "k8s/default"


class Publisher(Watcher):
    """A watcher driven by the test: only its publishing matters here."""

    async def watch(self) -> None:
        await self.stop.wait()


def helm_release(name: str, size: int) -> dict[str, Any]:
    """A Secret-like body of about `size` bytes (random, so that compression cannot shrink it)."""
    return {
        "metadata": {"name": name, "namespace": "higress-system"},
        "type": "helm.sh/release.v1",
        "data": {"release": os.urandom(size // 4 * 3).hex()[:size]},
    }


async def fold_all(bus: Bus) -> FoldState:
    state = FoldState()
    result = await fold_until(bus, state, await last_event_seq(bus))
    assert not result.rejected, result.rejected
    return state


async def stored(bus: Bus, seq: int) -> bytes:
    msg = await bus.js.get_msg(EVENTS_STREAM, seq)
    assert msg.data is not None
    return msg.data


async def test_a_2_mib_secret_is_stored_aside_and_folded_whole(bus: Bus) -> None:
    box = SecretBox.from_env()
    watcher = Publisher(bus, SOURCE, secret_box=box)
    body = helm_release("sh.helm.release.v1.web.v1", 2 * 1024 * 1024)

    assert await watcher.upsert("Secret", "higress-system/web", body)

    data = await stored(bus, await last_event_seq(bus))
    assert len(data) < 4096  # the reference, not the body
    event = decode(data)
    assert event.body is None and event.body_ref is not None
    assert event.body_ref.size > 2 * 1024 * 1024
    state = await fold_all(bus)
    held = state.objects["Secret"][SOURCE]["higress-system/web"]
    assert box.open(held.value(), source=SOURCE, kind="Secret", key="higress-system/web") == body


async def test_small_bodies_stay_in_the_message(bus: Bus) -> None:
    watcher = Publisher(bus, SOURCE)
    assert await watcher.upsert("ConfigMap", "higress-system/small", {"data": {"a": "b"}})
    event = decode(await stored(bus, await last_event_seq(bus)))
    assert event.body_ref is None and event.body == {"data": {"a": "b"}}


async def test_a_body_over_the_cap_is_reported_and_the_feed_goes_on(bus: Bus) -> None:
    watcher = Publisher(bus, SOURCE)
    huge = helm_release("huge", MAX_BODY_BYTES + 1024)

    assert not await watcher.upsert("ConfigMap", "higress-system/huge", huge)
    assert await watcher.upsert("ConfigMap", "higress-system/next", {"data": {}})

    status = await status_store.read(bus, "ConfigMap", SOURCE, "higress-system/huge")
    assert status is not None and status.state is Verdict.REJECTED
    assert str(MAX_BODY_BYTES) in status.reason
    state = await fold_all(bus)
    assert set(state.objects["ConfigMap"][SOURCE]) == {"higress-system/next"}

    # Once it fits again it is published and its report is cleared.
    assert await watcher.upsert("ConfigMap", "higress-system/huge", {"data": {}})
    assert await status_store.read(bus, "ConfigMap", SOURCE, "higress-system/huge") is None


async def test_a_refused_publish_is_isolated_to_its_object(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without the claim check, the 2 MiB envelope is over the server's max_payload: MaxPayloadError.
    monkeypatch.setattr(Publisher, "_inline_limit", lambda self: 64 * 1024 * 1024)
    watcher = Publisher(bus, SOURCE)

    assert not await watcher.upsert("ConfigMap", "higress-system/big", helm_release("big", 2 * 1024 * 1024))
    assert await watcher.upsert("ConfigMap", "higress-system/next", {"data": {}})

    status = await status_store.read(bus, "ConfigMap", SOURCE, "higress-system/big")
    assert status is not None and "MaxPayloadError" in status.reason
    state = await fold_all(bus)
    assert set(state.objects["ConfigMap"][SOURCE]) == {"higress-system/next"}


async def test_a_missing_or_altered_body_is_rejected_not_folded(bus: Bus) -> None:
    subject = subject_for(SOURCE, "ConfigMap")
    gone = BodyRef(sha256="0" * 64, size=10)
    event = Event(source=SOURCE, kind="ConfigMap", key="ns/gone", op=Op.UPSERT, rev="1", body_ref=gone)
    await bus.js.publish(subject, encode(event))
    # Stored under a name that is not its sha256: reading it back must notice.
    await bus.event_bodies.put("1" * 64, msgspec.msgpack.encode({"data": {}}))
    altered = BodyRef(sha256="1" * 64, size=10)
    event = Event(source=SOURCE, kind="ConfigMap", key="ns/altered", op=Op.UPSERT, rev="1", body_ref=altered)
    await bus.js.publish(subject, encode(event))

    state = FoldState()
    result = await fold_until(bus, state, await last_event_seq(bus))

    assert [r.seq for r in result.rejected] == [1, 2]
    assert "is not in xdsbus_event_bodies" in result.rejected[0].reason
    assert "does not match" in result.rejected[1].reason
    assert not state.objects.get("ConfigMap")
