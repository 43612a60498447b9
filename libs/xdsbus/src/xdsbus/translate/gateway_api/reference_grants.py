"""ReferenceGrants: which cross-namespace references their target namespace allows."""

from __future__ import annotations

from collections.abc import Iterable

from xdsbus.model.gateway_api import ReferenceGrant


def _core(group: str) -> str:
    return "" if group in ("", "core") else group


class ReferenceGrants:
    """The grants of one source, indexed by the namespace they live in (the target's)."""

    def __init__(self, grants: Iterable[ReferenceGrant]) -> None:
        self._by_namespace: dict[str, list[ReferenceGrant]] = {}
        for grant in grants:
            self._by_namespace.setdefault(grant.metadata.namespace, []).append(grant)

    def allows(
        self,
        *,
        from_group: str,
        from_kind: str,
        from_namespace: str,
        to_group: str,
        to_kind: str,
        to_namespace: str,
        to_name: str,
    ) -> bool:
        """Whether an object `from_kind` in `from_namespace` may refer to `to_kind/to_name` in
        `to_namespace` (always true within one namespace)."""
        if from_namespace == to_namespace:
            return True
        for grant in self._by_namespace.get(to_namespace, ()):
            if not any(
                _core(f.group) == _core(from_group) and f.kind == from_kind and f.namespace == from_namespace
                for f in grant.spec.from_
            ):
                continue
            if any(
                _core(t.group) == _core(to_group) and t.kind == to_kind and (not t.name or t.name == to_name)
                for t in grant.spec.to
            ):
                return True
        return False
