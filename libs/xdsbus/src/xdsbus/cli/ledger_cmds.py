"""`xdsbus ledger log|show|diff` and `xdsbus dump`.

Secret bodies are sealed in the body store (docs/design.md §5): `dump` opens them with the keyring when
it has one and redacts private keys unless `--reveal-secrets` (which needs the keyring); without the key a
Secret shows as sealed, naming the key it needs. `ledger show --resources` lists names and sha256 only,
never a body, and says for each Secret which key sealed it."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

from google.protobuf import json_format

from xdsbus.bus import Bus
from xdsbus.cli.errors import no_ledger
from xdsbus.cli.keys import keyring_or_none, reveal_keyring
from xdsbus.cli.output import emit
from xdsbus.cli.progress import progress
from xdsbus.contract import digest
from xdsbus.contract.type_urls import SECRET
from xdsbus.ledger import reader
from xdsbus.ledger.dump import sealed_json, write_dump
from xdsbus.ledger.store import BodySealed, fetch_stored, open_body, sealed_kid
from xdsbus.proto.ledger.v1 import ledger_pb2


def _time(unix_nano: int) -> str:
    return datetime.datetime.fromtimestamp(unix_nano / 1e9, tz=datetime.UTC).isoformat(
        timespec="milliseconds"
    )


def _term_summary(term: ledger_pb2.Term) -> dict[str, Any]:
    return {
        "term": term.term,
        "holder": term.holder,
        "after_version": term.head_version,
        "time": _time(term.time_unix_nano),
    }


def _pin(pin: ledger_pb2.Pin) -> dict[str, Any]:
    return {
        "target": pin.target,
        "operator": pin.operator,
        "via": pin.via,
        "event_seq": pin.event_seq,
        "reason": pin.reason,
    }


def _pin_text(pin: dict[str, Any]) -> str:
    """`pinned to 12 by ana` / `unpinned by ana`: what an operator's pin or release made of a version."""
    what = f"pinned to {pin['target']}" if pin["target"] else "unpinned"
    return f"{what} by {pin['operator'] or '?'} ({pin['via']}, event {pin['event_seq']})"


def _summary(record: ledger_pb2.Version) -> dict[str, Any]:
    pin = {"pin": _pin(record.pin)} if record.HasField("pin") else {}
    return {
        "version": record.version,
        "parent": record.parent,
        "first_seq": record.first_seq,
        "last_seq": record.last_seq,
        "time": _time(record.time_unix_nano),
        "digest": record.digest,
        # Named as is: a newer algorithm this version cannot compute is still listed.
        "digest_algorithm": record.digest_algorithm or digest.LINES_V1,
        "resources": record.resource_count,
        "changed": record.changed_count,
        "removed": record.removed_count,
        "translator_version": record.translator_version,
        **pin,
    }


async def log(bus: Bus, args: argparse.Namespace) -> int:
    """List the scope's versions, oldest first; with --terms, the term records among them. An empty
    ledger lists nothing and says on stderr why it may be empty."""
    rows: list[dict[str, Any]] = []
    async for entry in reader.records(bus, args.scope):
        if not reader.is_term(entry.record):
            rows.append(_summary(entry.record))
        elif args.terms:
            rows.append(_term_summary(entry.record.term))
    if not rows:
        # An empty list, not a failure (as `kubectl get` says "No resources found"), with the reason.
        sys.stderr.write((await no_ledger(bus, args.scope)).render())
        if args.json:
            emit(args, rows, str)
        return 0
    if args.limit:
        # The limit counts versions; the term records among them stay.
        versions = [i for i, r in enumerate(rows) if "version" in r]
        rows = rows[versions[-args.limit] :] if len(versions) >= args.limit else rows

    def line(r: dict[str, Any]) -> str:
        if "term" in r:
            return (
                f"{'term':>10} {r['term']:>10} {r['time']:<30} {r['holder']} leads after {r['after_version']}"
            )
        pin = f"  {_pin_text(r['pin'])}" if "pin" in r else ""
        return (
            f"{r['version']:>10} {r['parent']:>10} {r['time']:<30} {r['resources']:>7} {r['changed']:>6} "
            f"{r['removed']:>6}  {r['digest']}{pin}"
        )

    def text(rows: list[dict[str, Any]]) -> str:
        lines = [f"{'VERSION':>10} {'PARENT':>10} {'TIME':<30} {'RES':>7} {'CHG':>6} {'DEL':>6}  DIGEST"]
        lines += [line(r) for r in rows]
        return "\n".join(lines) + "\n"

    emit(args, rows, text)
    return 0


async def show(bus: Bus, args: argparse.Namespace) -> int:
    """One version's record, its changes, and optionally every resource at it."""
    entry = await reader.find(bus, args.scope, args.version)
    data = _summary(entry.record)
    changes = await reader.changes_of(bus, entry.record)
    data["changes"] = json_format.MessageToDict(changes, preserving_proto_field_name=True)
    if args.resources:
        resources = await reader.resource_set(bus, args.scope, args.version)
        data["resource_list"] = [
            {"type_url": k.type_url, "name": k.name, "sha256": sha} for k, sha in sorted(resources.items())
        ]
        for row in data["resource_list"]:
            if row["type_url"] == SECRET:
                # The stored body's key id, or null when stored plain (by a version before sealing).
                row["sealed_kid"] = sealed_kid(await fetch_stored(bus, row["sha256"]))
        data["digest_verified"] = reader.digest_matches(entry.record, resources)

    def text(d: dict[str, Any]) -> str:
        lines = [
            f"{key}: {d[key]}"
            for key in (
                "version",
                "parent",
                "first_seq",
                "last_seq",
                "time",
                "digest",
                "digest_algorithm",
                "resources",
                "translator_version",
            )
        ]
        if "pin" in d:
            lines.append(f"pin: {_pin_text(d['pin'])}")
        for ref in d["changes"].get("changed", []):
            lines.append(f"  ~ {ref['type_url'].rsplit('.', 1)[-1]} {ref['name']} {ref['sha256'][:12]}")
        for ref in d["changes"].get("removed", []):
            lines.append(f"  - {ref['type_url'].rsplit('.', 1)[-1]} {ref['name']}")
        if "digest_verified" in d:
            lines.append(f"digest_verified: {d['digest_verified']}")
        for ref in d.get("resource_list", []):
            sealed = ""
            if "sealed_kid" in ref:
                sealed = f" sealed with {ref['sealed_kid']}" if ref["sealed_kid"] else " stored plain"
            lines.append(
                f"    {ref['type_url'].rsplit('.', 1)[-1]} {ref['name']} {ref['sha256'][:12]}{sealed}"
            )
        return "\n".join(lines) + "\n"

    emit(args, data, text)
    return 0


async def diff(bus: Bus, args: argparse.Namespace) -> int:
    """Resources added, removed and changed from version A to version B."""
    a = await reader.resource_set(bus, args.scope, args.a)
    b = await reader.resource_set(bus, args.scope, args.b)
    data = {
        "from": args.a,
        "to": args.b,
        "added": [{"type_url": k.type_url, "name": k.name} for k in sorted(b.keys() - a.keys())],
        "removed": [{"type_url": k.type_url, "name": k.name} for k in sorted(a.keys() - b.keys())],
        "changed": [
            {"type_url": k.type_url, "name": k.name} for k in sorted(a.keys() & b.keys()) if a[k] != b[k]
        ],
    }

    def text(d: dict[str, Any]) -> str:
        lines = [f"{d['from']} -> {d['to']}"]
        for mark, key in (("+", "added"), ("-", "removed"), ("~", "changed")):
            lines += [f"  {mark} {r['type_url'].rsplit('.', 1)[-1]} {r['name']}" for r in d[key]]
        return "\n".join(lines) + "\n"

    emit(args, data, text)
    return 0


async def dump(bus: Bus, args: argparse.Namespace) -> int:
    """Write a ledger version (default: the head) as Envoy config JSON, one file per type."""
    version = args.version
    if not version:
        head = await reader.head(bus, args.scope)
        if head is None:
            raise await no_ledger(bus, args.scope)
        version = head.record.version
    box = reveal_keyring() if args.reveal_secrets else keyring_or_none()
    bodies: list[tuple[str, bytes | dict[str, object]]] = []
    with progress(args, f"dump: reading version {version}", "resources") as bar:
        resources = await reader.resource_set(bus, args.scope, version)
        bar.update(0, len(resources), "dump: reading bodies")
        for key, sha in sorted(resources.items()):
            stored = await fetch_stored(bus, sha)
            try:
                bodies.append((key.type_url, open_body(stored, sha, box)))
            except BodySealed:
                bodies.append((key.type_url, sealed_json(key.type_url, key.name, sealed_kid(stored))))
            bar.advance()
    paths = write_dump(args.directory, bodies, reveal=args.reveal_secrets)
    emit(
        args,
        {"version": version, "files": [str(p) for p in paths]},
        lambda d: "".join(f"{p}\n" for p in d["files"]),
    )
    return 0
