"""KV xdsbus_status: what the builder decided about each object, readable by `xdsbus status`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import msgspec
from nats.js.errors import KeyNotFoundError

from xdsbus.bus import STATUS_BUCKET, Bus
from xdsbus.contract.status import ObjectStatus, Verdict, status_key
from xdsbus.fold.folding import Rejection
from xdsbus.fold.state import ObjectRef


async def publish(bus: Bus, statuses: Iterable[ObjectStatus | ObjectRef]) -> None:
    """Write changed statuses (a bare ObjectRef deletes the object's entry), pipelined."""
    pending = []
    for item in statuses:
        if isinstance(item, ObjectRef):
            try:
                await bus.status.delete(status_key(item.kind, item.source, item.key))
            except KeyNotFoundError:
                pass
            continue
        subject = f"$KV.{STATUS_BUCKET}.{status_key(item.kind, item.source, item.key)}"
        pending.append(await bus.js.publish_async(subject, msgspec.json.encode(item)))
    if pending:
        await asyncio.gather(*pending)


async def publish_rejections(bus: Bus, rejections: Iterable[Rejection]) -> None:
    """Malformed events, named by their subject and sequence."""
    await publish(
        bus,
        (
            ObjectStatus(
                kind="Event", source=r.subject, key=str(r.seq), state=Verdict.REJECTED, reason=r.reason
            )
            for r in rejections
        ),
    )


async def read_all(bus: Bus) -> list[ObjectStatus]:
    """Every status entry, sorted by kind, source and key.

    Keys come from the bucket stream's subjects, not `KeyValue.keys()`: nats-py's `keys()` ends early
    while other keys are being written (nats-io/nats.py#842), and `xdsbus status` would miss entries."""
    prefix = f"$KV.{STATUS_BUCKET}."
    info = await bus.js.stream_info(f"KV_{STATUS_BUCKET}", subjects_filter=f"{prefix}>")
    keys = [subject.removeprefix(prefix) for subject in info.state.subjects or {}]
    out = []
    for key in sorted(keys):
        try:
            entry = await bus.status.get(key)
        except KeyNotFoundError:
            continue
        try:
            out.append(msgspec.json.decode(entry.value or b"", type=ObjectStatus))
        except msgspec.DecodeError:
            continue
    return sorted(out, key=lambda s: (s.kind, s.source, s.key))
