"""The shape of the handlers whose kinds only touch service hostnames (services, registries)."""

from __future__ import annotations

from collections.abc import Callable

from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.translate.handlers.touched import Touched

HostFold = Callable[[FoldState, ObjectRef], set[str]]


class HostFolds:
    """A handler with one fold method per kind, each returning the hostnames it touched; its kinds are
    the table's, in the table's order."""

    _folds: dict[str, HostFold]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds of the fold table, in the order a full build folds them."""
        return tuple(self._folds)

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Re-read `ref` with its kind's fold method; touches the hostnames it returns."""
        return Touched(hosts=frozenset(self._folds[ref.kind](state, ref)))
