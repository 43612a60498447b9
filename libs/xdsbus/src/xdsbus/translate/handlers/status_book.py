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
    """Every object's current verdict, shared by the handlers, and the refs whose verdict changed."""

    def __init__(self) -> None:
        self.statuses: dict[ObjectRef, ObjectStatus] = {}
        self._changed: set[ObjectRef] = set()

    def set(
        self, ref: ObjectRef, state: Verdict, reason: str = "", warnings: list[str] | None = None
    ) -> None:
        """Record a verdict on `ref`; only a different one counts as a change."""
        self.put(
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
        if self.statuses.get(ref) != status:
            self.statuses[ref] = status
            self._changed.add(ref)

    def clear(self, ref: ObjectRef) -> None:
        """The object is gone: its status goes too."""
        if self.statuses.pop(ref, None) is not None:
            self._changed.add(ref)

    def take_changes(self) -> list[ObjectStatus | ObjectRef]:
        """Statuses that changed since the last call; a bare ObjectRef means the object is gone."""
        out: list[ObjectStatus | ObjectRef] = [self.statuses.get(ref, ref) for ref in sorted(self._changed)]
        self._changed.clear()
        return out
