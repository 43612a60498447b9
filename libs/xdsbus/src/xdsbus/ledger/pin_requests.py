"""Operators' pin requests (docs/rollback.md): checking one, publishing it as a LedgerPin event, and
waiting for the builder's verdict. `xdsbus rollback`/`unpin` and the console's rollback both go
through here, with the NATS user `operator` (docs/design.md §10: it may publish LedgerPin events only)."""

from __future__ import annotations

import asyncio
import time

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.pins import LEDGER_PIN_KIND, OPERATOR_SOURCE_TYPE, PIN_STATUS_KIND, PinRequest
from xdsbus.contract.scopes import GATEWAY_SCOPE_PREFIX, is_scope
from xdsbus.contract.status import ObjectStatus
from xdsbus.events import EVENTS_STREAM, PROCESS_ATTEMPTS, Event, Op, encode, subject_for
from xdsbus.ledger import pins


class PinRefused(ValueError):
    """A pin request that is not published: a scope that cannot be pinned or a version it cannot serve."""


def check_scope(scope: str) -> None:
    """Refuse a scope that cannot be pinned: derived scopes (`gateway.<ns>.<name>`) follow the fold of
    the `default` scope's builder, which pins only its own scope."""
    if not is_scope(scope):
        raise PinRefused(f"{scope!r} is not a scope name")
    if scope.startswith(GATEWAY_SCOPE_PREFIX):
        raise PinRefused(
            f"scope {scope} is a Gateway's derived scope: it follows the fold of scope default and cannot "
            "be pinned on its own (pin scope default, or roll the Gateway's objects back)"
        )


async def check_version(bus: Bus, scope: str, version: int) -> pins.PinTarget:
    """The target of a pin to `version`, read as the builder will read it; `PinRefused` saying why not."""
    check_scope(scope)
    try:
        return await pins.target(bus, scope, version)
    except pins.PinRejected as exc:
        raise PinRefused(str(exc)) from None


async def publish(bus: Bus, scope: str, *, version: int, by: str, tool: str, reason: str = "") -> int:
    """Publish a LedgerPin event from source `operator/<tool>`: pin `scope` to `version`, or release it
    when `version` is 0. Returns the event's sequence in the log."""
    check_scope(scope)
    event = Event(
        source=f"{OPERATOR_SOURCE_TYPE}/{tool}",
        kind=LEDGER_PIN_KIND,
        key=scope,
        op=Op.UPSERT if version else Op.DELETE,
        rev=str(version),
        at=time.time_ns(),
        body=PinRequest(version=version, by=by, reason=reason),
    )
    ack = await bus.js.publish(
        subject_for(event.source, event.kind),
        encode(event),
        stream=EVENTS_STREAM,
        headers={"Nats-Msg-Id": PROCESS_ATTEMPTS.next(event)},
    )
    return int(ack.seq)


async def verdict(bus: Bus, scope: str, event_seq: int, timeout: float) -> ObjectStatus | None:
    """The builder's status entry for the pin event at `event_seq` (or a later one), once it wrote it;
    None when it did not within `timeout` seconds (no builder leads the scope, or it is behind)."""
    deadline = time.monotonic() + timeout
    while True:
        status = await status_store.read(bus, PIN_STATUS_KIND, f"builder/{scope}", scope)
        if status is not None and status.pin is not None and status.pin.event_seq >= event_seq:
            return status
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(0.1)
