"""`xdsbus proxy-status` and `xdsbus proxy-config PROXY`: every proxy's sync state across all edges, and
what one proxy was sent, read from KV xdsbus_proxies and the ledger (docs/proxy-status.md).

proxy-config shows, per type, the resources of the ledger version the proxy's view of that type was last
brought up to (the version sent, or a later one that changed nothing of the type), filtered to the names
the proxy subscribed where it did not ask for everything. Private keys are always redacted; a sealed
Secret the CLI cannot open shows as sealed."""

from __future__ import annotations

import argparse
import datetime
from typing import Any

from xdsbus import proxy_store
from xdsbus.bus import Bus
from xdsbus.cli.keys import keyring_or_none
from xdsbus.cli.output import emit
from xdsbus.contract.proxy_status import ProxyStatus, TypeSync
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET
from xdsbus.ledger import reader
from xdsbus.ledger.dump import sealed_json, to_json
from xdsbus.ledger.store import BodySealed, fetch_stored, open_body, sealed_kid
from xdsbus.proxy_store import SyncState, sync_state

# The columns of proxy-status, in istioctl's order, and each one's type.
COLUMNS = (
    ("CDS", CLUSTER),
    ("LDS", LISTENER),
    ("EDS", ENDPOINT),
    ("RDS", ROUTE),
    ("ECDS", EXTENSION_CONFIG),
    ("SDS", SECRET),
)
# proxy-config --type, as istioctl names them (parser.PROXY_TYPES).
TYPES = {
    "clusters": CLUSTER,
    "endpoints": ENDPOINT,
    "listeners": LISTENER,
    "routes": ROUTE,
    "secrets": SECRET,
    "extensions": EXTENSION_CONFIG,
}


def _time(unix: float) -> str:
    return datetime.datetime.fromtimestamp(unix, tz=datetime.UTC).isoformat(timespec="seconds")


async def _heads(bus: Bus, scopes: set[str]) -> dict[str, int]:
    """The ledger head version of each scope; 0 for a scope with an empty ledger."""
    heads = {}
    for scope in sorted(scopes):
        entry = await reader.head(bus, scope)
        heads[scope] = entry.record.version if entry is not None else 0
    return heads


def _type_row(sync: TypeSync | None, head: int) -> dict[str, Any]:
    state = sync_state(sync, head)
    if sync is None:
        return {"state": state}
    row: dict[str, Any] = {
        "state": state,
        "sent": sync.sent,
        "acked": sync.acked,
        "current": sync.current,
        "pending": sync.pending,
        "subscribed": sync.subscribed_count if not sync.wildcard else "*",
    }
    if sync.nacked:
        row.update(nacked=sync.nacked, error=sync.error, nacked_at=_time(sync.nacked_at))
    return row


def status_rows(entries: list[ProxyStatus], heads: dict[str, int]) -> list[dict[str, Any]]:
    """One row per proxy and edge, the state of each type under its column name."""
    rows = []
    for entry in entries:
        head = heads.get(entry.scope, 0)
        by_type = {t.type_url: t for t in entry.types}
        rows.append(
            {
                "name": entry.node_id,
                "scope": entry.scope,
                "edge": entry.edge,
                "version": entry.version,
                "head": head,
                "cluster": entry.cluster,
                "mode": entry.mode,
                "connected_since": _time(entry.connected_at),
                "updated": _time(entry.updated_at),
                "types": {column: _type_row(by_type.get(url), head) for column, url in COLUMNS},
            }
        )
    return rows


def _table(rows: list[dict[str, Any]]) -> str:
    header = ["NAME", "SCOPE", "EDGE", *(c for c, _ in COLUMNS), "VERSION"]
    lines = [
        [r["name"], r["scope"], r["edge"], *(r["types"][c]["state"] for c, _ in COLUMNS), str(r["version"])]
        for r in rows
    ]
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    out = [
        "   ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
        for line in [header, *lines]
    ]
    for r in rows:
        for column, _ in COLUMNS:
            t = r["types"][column]
            if t["state"] == SyncState.NACKED:
                # One line per NACK: Envoy's messages may span several.
                error = " ".join(t["error"].split())
                out.append(f"{r['name']} ({r['edge']}) {column} rejected version {t['nacked']}: {error}")
    return "\n".join(out) + "\n"


async def proxy_status(bus: Bus, args: argparse.Namespace) -> int:
    """One line per proxy and edge: SYNCED, STALE, NACKED or NOT SENT per type, and the version served."""
    entries = [e for e in await proxy_store.read_all(bus) if e.node_id.startswith(args.proxy)]
    rows = status_rows(entries, await _heads(bus, {e.scope for e in entries}))
    args.json = args.json or args.output == "json"
    emit(args, rows, lambda rows: _table(rows) if rows else "no proxies connected to any edge\n")
    return 0 if rows or not args.proxy else 1


def _pick(entries: list[ProxyStatus], wanted: str) -> ProxyStatus:
    """The entry of the proxy named `wanted` (exactly, else by a prefix naming one proxy); of the edges
    serving it, the one that wrote last."""
    exact = [e for e in entries if e.node_id == wanted]
    matches = exact or [e for e in entries if e.node_id.startswith(wanted)]
    nodes = sorted({e.node_id for e in matches})
    if not nodes:
        raise LookupError(f"no proxy {wanted!r} is connected to any edge (see `xdsbus proxy-status`)")
    if len(nodes) > 1:
        raise LookupError(f"{wanted!r} names {len(nodes)} proxies: {', '.join(nodes)}")
    return max(matches, key=lambda e: e.updated_at)


def _sent_names(sync: TypeSync, present: list[ResourceKey]) -> tuple[list[ResourceKey], int]:
    """The resources of a type the proxy holds: all for a wildcard subscription, else those it named; and
    how many subscribed names the edge did not list (a bounded entry)."""
    if sync.wildcard:
        return present, 0
    named = set(sync.subscribed)
    return [k for k in present if k.name in named], sync.subscribed_count - len(sync.subscribed)


async def proxy_config(bus: Bus, args: argparse.Namespace) -> int:
    """Per type, the resources the proxy was sent, as Envoy JSON (private keys redacted)."""
    entry = _pick(await proxy_store.read_all(bus), args.proxy)
    wanted = [TYPES[t] for t in args.type] if args.type else [t.type_url for t in entry.types]
    syncs = {t.type_url: t for t in entry.types}
    box = keyring_or_none()
    sets: dict[int, dict[ResourceKey, str]] = {}
    types: dict[str, Any] = {}
    for name, type_url in TYPES.items():
        sync = syncs.get(type_url)
        if type_url not in wanted:
            continue
        if sync is None:
            types[name] = {"subscribed": False, "resources": []}
            continue
        version = sync.current or int(sync.sent or 0)
        if version not in sets:
            sets[version] = await reader.resource_set(bus, entry.scope, version)
        present = sorted(k for k in sets[version] if k.type_url == type_url)
        keys, unlisted = _sent_names(sync, present)
        resources = []
        for key in keys:
            sha = sets[version][key]
            stored = await fetch_stored(bus, sha)
            try:
                resources.append(to_json(open_body(stored, sha, box)))
            except BodySealed:
                resources.append(sealed_json(key.type_url, key.name, sealed_kid(stored)))
        types[name] = {
            "subscribed": True,
            "version": version,
            "sent": sync.sent,
            "acked": sync.acked,
            "unlisted_names": unlisted,
            "names": [k.name for k in keys],
            "resources": resources,
        }
    data = {"proxy": entry.node_id, "scope": entry.scope, "edge": entry.edge, "types": types}

    def text(d: dict[str, Any]) -> str:
        lines = [f"proxy {d['proxy']} (scope {d['scope']}, edge {d['edge']})"]
        for name, t in d["types"].items():
            if not t["subscribed"]:
                lines.append(f"{name.upper()}: not subscribed")
                continue
            more = f", {t['unlisted_names']} more subscribed names not listed" if t["unlisted_names"] else ""
            lines.append(
                f"{name.upper()} (version {t['version']}, sent {t['sent']}, acked {t['acked'] or '-'}{more})"
            )
            lines += [f"  {n}" for n in t["names"]]
        return "\n".join(lines) + "\n"

    args.json = args.json or args.output == "json"
    emit(args, data, text)
    return 0
