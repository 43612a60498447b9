"""How many tables the Ingress HTTP port's route table is split into (docs/route-table-split.md).

`--route-tables auto` (the default) keeps one table, exactly as when the split did not exist, while the
port has fewer than SPLIT_FROM_HOSTS virtual hosts, and splits it from there into the largest power of two
of tables that leaves at least HOSTS_PER_TABLE hosts in a table on average (less than twice that; at most
one table per key): the count doubles each time the hosts do. Both figures come from Envoy's cost of
rebuilding a table against the split's cost per request, measured in docs/route-table-split.md.
`--route-tables 0` is one table and `N` is N tables whatever the hosts.

The choice reads the number of hosts alone, so it is a function of the folded state: the same events give
the same tables whatever the batching, a restart or a replay. There is no hysteresis, which would depend
on the order hosts came and went: a port whose hosts go back and forth across a threshold changes form
each time."""

from __future__ import annotations

import msgspec

from xdsbus.translate.route_tables import KEYS
from xdsbus.translate.settings import AUTO

# From this many virtual hosts on the port, `auto` splits its table; below, one table.
SPLIT_FROM_HOSTS = 2000
# `auto` splits into the largest power of two of tables holding at least this many hosts each on average
# (at SPLIT_FROM_HOSTS: SPLIT_FROM_HOSTS / HOSTS_PER_TABLE tables, a power of two).
HOSTS_PER_TABLE = 250


class RouteTableChoice(msgspec.Struct, frozen=True, kw_only=True):
    """The form of the port's route table: `tables` 0 is one table `http.<port>`, N is N tables
    `http.<port>.<nnn>`; chosen by `setting` (--route-tables) for `hosts` virtual hosts."""

    port: int
    setting: int | str
    hosts: int
    tables: int

    @property
    def split(self) -> bool:
        """Whether the listener reads the tables through Scoped RDS."""
        return self.tables > 0

    def describe(self) -> str:
        """What is in use and why, in words (the builder's status of the port, `xdsbus status`)."""
        hosts = f"{self.hosts:,} virtual host{'s' if self.hosts != 1 else ''} on port {self.port}"
        if self.setting != AUTO:
            form = f"split into {self.tables} tables" if self.split else "one table"
            return f"{form} (--route-tables {self.setting}): {hosts}"
        if not self.split:
            return (
                f"one table: {hosts}, fewer than {SPLIT_FROM_HOSTS:,} (--route-tables auto splits from "
                f"{SPLIT_FROM_HOSTS:,})"
            )
        return (
            f"split into {self.tables} tables: {hosts}, at least {SPLIT_FROM_HOSTS:,} (--route-tables auto: "
            f"a table per {HOSTS_PER_TABLE} to {2 * HOSTS_PER_TABLE} hosts, a power of two, at most {KEYS:,})"
        )


def choose(port: int, setting: int | str, hosts: int) -> RouteTableChoice:
    """The tables of a port with `hosts` virtual hosts under --route-tables `setting`."""
    if setting != AUTO:
        tables = int(setting)
    elif hosts < SPLIT_FROM_HOSTS:
        tables = 0
    else:
        tables = min(KEYS, 1 << ((hosts // HOSTS_PER_TABLE).bit_length() - 1))
    return RouteTableChoice(port=port, setting=setting, hosts=hosts, tables=tables)


class CurrentRouteTables:
    """The choice in force, shared by the listeners, which make it, and the Ingress hosts, whose error
    pages carry the table key when the table is split."""

    def __init__(self, port: int, setting: int | str) -> None:
        self.value = choose(port, setting, 0)
