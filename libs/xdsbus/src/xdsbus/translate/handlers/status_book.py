"""The translator's verdicts on objects, and which changed since the builder last published them."""

from __future__ import annotations

from typing import Any

from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.fold.state import ObjectRef

# The list fields a plain verdict leaves empty, shared by every status `set` builds instead of six new
# empty lists each (msgspec copies a mutable default per instance): at 60k objects they were 180k of the
# objects the cyclic collector walks, and 80 bytes per endpoint (bench builder_memory). Statuses are
# frozen and never mutated, and an empty list is still the default, so equality and JSON are unchanged.
_NONE: list[Any] = []


class StatusBook:
    """Every object's current verdict, shared by the handlers, and the refs whose verdict changed.

    A plain verdict (no reason, warnings or other detail: most objects) is held as its `Verdict` alone,
    a shared enum member, and its ObjectStatus is made when read: a status per object was 120 bytes, 72
    per endpoint at 100k endpoints (bench builder_memory)."""

    def __init__(self) -> None:
        self._held: dict[ObjectRef, ObjectStatus | Verdict] = {}
        self._changed: set[ObjectRef] = set()

    @property
    def statuses(self) -> dict[ObjectRef, ObjectStatus]:
        """Every object's current status (made on each call: for tests and tools, not for a hot path)."""
        return {ref: _status(ref, held) for ref, held in self._held.items()}

    def set(
        self, ref: ObjectRef, state: Verdict, reason: str = "", warnings: list[str] | None = None
    ) -> None:
        """Record a verdict on `ref`; only a different one counts as a change."""
        if not reason and not warnings:
            self._hold(ref, state)
            return
        self._hold(
            ref,
            ObjectStatus(
                kind=ref.kind,
                source=ref.source,
                key=ref.key,
                state=state,
                reason=reason,
                warnings=warnings or _NONE,
                conditions=_NONE,
                listeners=_NONE,
                parents=_NONE,
                addresses=_NONE,
                errors=_NONE,
            ),
        )

    def put(self, ref: ObjectRef, status: ObjectStatus) -> None:
        """Record a status built elsewhere (the Gateway API's conditions)."""
        self._hold(ref, status.state if status == _status(ref, status.state) else status)

    def _hold(self, ref: ObjectRef, held: ObjectStatus | Verdict) -> None:
        if self._held.get(ref) != held:
            self._held[ref] = held
            self._changed.add(ref)

    def clear(self, ref: ObjectRef) -> None:
        """The object is gone: its status goes too."""
        if self._held.pop(ref, None) is not None:
            self._changed.add(ref)

    def take_changes(self) -> list[ObjectStatus | ObjectRef]:
        """Statuses that changed since the last call; a bare ObjectRef means the object is gone."""
        held = self._held
        out: list[ObjectStatus | ObjectRef] = [
            _status(ref, held[ref]) if ref in held else ref for ref in sorted(self._changed)
        ]
        self._changed.clear()
        return out


def _status(ref: ObjectRef, held: ObjectStatus | Verdict) -> ObjectStatus:
    """The ObjectStatus of what `StatusBook` holds for `ref`."""
    if isinstance(held, ObjectStatus):
        return held
    return ObjectStatus(
        kind=ref.kind,
        source=ref.source,
        key=ref.key,
        state=held,
        warnings=_NONE,
        conditions=_NONE,
        listeners=_NONE,
        parents=_NONE,
        addresses=_NONE,
        errors=_NONE,
    )
