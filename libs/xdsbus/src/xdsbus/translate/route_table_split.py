"""Publishes the split route table of the Ingress HTTP port (translate/route_tables.py): the tables from
the port's framed virtual hosts, rebuilding only those whose hosts changed, and their scopes."""

from __future__ import annotations

from collections.abc import Mapping

from xdsbus.contract.type_urls import ROUTE, SCOPED_ROUTE
from xdsbus.translate import envoy_routes
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.route_tables import (
    KEYS,
    TABLE_HEADER,
    is_everywhere,
    scope,
    scope_name,
    table_name,
    table_of,
)

# The table header is Envoy's business alone: never forwarded upstream.
_REMOVED = (TABLE_HEADER,)


class SplitRouteTables:
    """The tables and scopes of one port."""

    def __init__(self, table: ResourceTable, port: int, tables: int) -> None:
        self._table = table
        self._port = port
        self._tables = tables
        # What was last published: per host its framed virtual host (the handlers keep a host's bytes
        # object until the host changes, so a change is found by identity), per table its exact hosts.
        self._seen: dict[str, bytes] = {}
        self._members: list[dict[str, bytes]] = [{} for _ in range(tables)]
        self._everywhere: dict[str, bytes] = {}
        self._published: set[int] = set()
        self._scoped = False

    def publish(self, vhosts: Mapping[str, bytes]) -> None:
        """Publish the tables these framed virtual hosts (by host) change: a table holds its exact hosts
        after the wildcard hosts and `*`, which every table holds; each group sorted by host."""
        seen = self._seen
        dirty: set[int] = set()
        everywhere_changed = False
        for host in seen.keys() - vhosts.keys():
            everywhere_changed |= self._drop(host, dirty)
        for host, framed in vhosts.items():
            if seen.get(host) is not framed:
                everywhere_changed |= self._set(host, framed, dirty)
        self._seen = dict(vhosts)
        if everywhere_changed:
            dirty = set(range(self._tables))
        dirty |= set(range(self._tables)) - self._published
        everywhere = [self._everywhere[h] for h in sorted(self._everywhere)]
        for t in sorted(dirty):
            members = self._members[t]
            name = table_name(self._port, t)
            parts = everywhere + [members[h] for h in sorted(members)]
            body = envoy_routes.assemble_framed_route_config(name, parts, remove_request_headers=_REMOVED)
            self._table.put(ROUTE, name, body)
            self._published.add(t)
        if not self._scoped:
            # Every key has a scope, whatever hosts exist: a request whose key had none would find no
            # route, where one table would have matched a wildcard host or `*`.
            for key in range(KEYS):
                body = scope(self._port, key, self._tables).SerializeToString(deterministic=True)
                self._table.put(SCOPED_ROUTE, scope_name(self._port, key), body)
            self._scoped = True

    def withdraw(self) -> None:
        """Remove the tables and scopes this published (the port changes form or number of tables; what
        the new form publishes again with the same bytes is no change to the ledger)."""
        for t in sorted(self._published):
            self._table.remove(ROUTE, table_name(self._port, t))
        if self._scoped:
            for key in range(KEYS):
                self._table.remove(SCOPED_ROUTE, scope_name(self._port, key))

    def _set(self, host: str, framed: bytes, dirty: set[int]) -> bool:
        if is_everywhere(host):
            self._everywhere[host] = framed
            return True
        t = table_of(host, self._tables)
        self._members[t][host] = framed
        dirty.add(t)
        return False

    def _drop(self, host: str, dirty: set[int]) -> bool:
        if is_everywhere(host):
            del self._everywhere[host]
            return True
        t = table_of(host, self._tables)
        del self._members[t][host]
        dirty.add(t)
        return False
