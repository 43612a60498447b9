"""The proxies view: every proxy each edge serves (KV xdsbus_proxies, written by the edges;
docs/proxy-status.md) with each type's state against its scope's ledger head, as `xdsbus proxy-status`
prints it: SYNCED, STALE, NACKED (with Envoy's error) or NOT SENT."""

from __future__ import annotations

from collections.abc import Mapping

import msgspec

from xdsbus import proxy_store
from xdsbus.bus import Bus
from xdsbus.ledger.dump import FILE_NAMES


class TypeRow(msgspec.Struct, frozen=True, kw_only=True):
    """One resource type of one proxy."""

    type: str
    state: str
    sent: str
    acked: str
    nacked: str = ""
    error: str = ""


class ProxyRow(msgspec.Struct, frozen=True, kw_only=True):
    """One proxy as one edge serves it."""

    node_id: str
    cluster: str
    scope: str
    edge: str
    mode: str
    peer: str
    connected_at: float
    updated_at: float
    version: int
    head: int
    types: list[TypeRow]


def _type_name(type_url: str) -> str:
    """`clusters`, `listeners`, ...: the names `xdsbus proxy-config --type` and dumps use."""
    return FILE_NAMES.get(type_url, type_url.rsplit(".", 1)[-1]).removesuffix(".json")


async def proxies(bus: Bus, heads: Mapping[str, int]) -> list[ProxyRow]:
    """Every proxy entry, its types judged against `heads` (scope -> ledger head version)."""
    rows = []
    for status in await proxy_store.read_all(bus):
        head = heads.get(status.scope, 0)
        rows.append(
            ProxyRow(
                node_id=status.node_id,
                cluster=status.cluster,
                scope=status.scope,
                edge=status.edge,
                mode=status.mode,
                peer=status.peer,
                connected_at=status.connected_at,
                updated_at=status.updated_at,
                version=status.version,
                head=head,
                types=[
                    TypeRow(
                        type=_type_name(sync.type_url),
                        state=proxy_store.sync_state(sync, head).value,
                        sent=sync.sent,
                        acked=sync.acked,
                        nacked=sync.nacked,
                        error=sync.error,
                    )
                    for sync in status.types
                ],
            )
        )
    return rows
