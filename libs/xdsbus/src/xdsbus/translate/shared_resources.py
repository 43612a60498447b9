"""Resources several owners may need, kept while any owner still does.

Derived clusters (a destination's policy or fallback cluster) are named by what they contain, so two
virtual hosts asking for the same one share it; it leaves the table with its last user.
"""

from __future__ import annotations

from collections.abc import Mapping

from xdsbus.contract.resources import ResourceKey
from xdsbus.translate.resource_table import ResourceTable


class SharedResources:
    """Reference-counted resources in a ResourceTable, owned by string keys (virtual host names)."""

    def __init__(self, table: ResourceTable) -> None:
        self._table = table
        self._owned: dict[str, dict[ResourceKey, bytes]] = {}
        self._users: dict[ResourceKey, set[str]] = {}

    def set_owned(self, owner: str, resources: Mapping[ResourceKey, bytes]) -> None:
        """Make `resources` exactly what `owner` needs, adding and dropping table entries as needed.

        Resources of one name always have the same bytes whoever asks (their name hashes their
        content), so the last writer cannot disagree with the others."""
        before = self._owned.pop(owner, {})
        for key in sorted(before.keys() - resources.keys()):
            users = self._users[key]
            users.discard(owner)
            if not users:
                del self._users[key]
                self._table.remove(key.type_url, key.name)
        for key in sorted(resources):
            self._users.setdefault(key, set()).add(owner)
            self._table.put(key.type_url, key.name, resources[key])
        if resources:
            self._owned[owner] = dict(resources)
