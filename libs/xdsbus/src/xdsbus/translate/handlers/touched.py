"""What a handler's fold touched, and the interface every kind handler has."""

from __future__ import annotations

from typing import Protocol

import msgspec

from xdsbus.fold.state import FoldState, ObjectRef


class Touched(msgspec.Struct, frozen=True):
    """The keys one folded object touched, for the translator to regenerate.

    hosts: service hostnames whose clusters and endpoints are rebuilt. secrets: SDS names whose content
    may have changed. ingresses: Ingresses to translate again, once the services of the update are
    rebuilt (an Ingress reads their models). gateway_api: the Gateway API must be recomputed.
    listeners: the wasm plugins' filters changed, so every listener is rebuilt. all_hosts: what routes
    need of the wasm plugins changed, so every virtual host is rebuilt."""

    hosts: frozenset[str] = frozenset()
    secrets: frozenset[str] = frozenset()
    ingresses: frozenset[ObjectRef] = frozenset()
    gateway_api: bool = False
    listeners: bool = False
    all_hosts: bool = False


class KindHandler(Protocol):
    """One family of kinds: it owns the index of their objects and folds them into it."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The event kinds this handler folds, in the order a full build folds them."""
        ...

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Re-read `ref` from `state` (gone when absent), update the index and the object's status."""
        ...
