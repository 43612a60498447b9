"""`xdsbus status [KIND/NAMESPACE/NAME]`."""

from __future__ import annotations

import argparse

import msgspec

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.cli.output import emit


async def status(bus: Bus, args: argparse.Namespace) -> int:
    """Every object's verdict, or those matching KIND/NAMESPACE/NAME (a prefix also matches)."""
    wanted = args.object
    rows = [
        msgspec.to_builtins(s)
        for s in await status_store.read_all(bus)
        if not wanted
        or f"{s.kind}/{s.key}".startswith(wanted)
        or f"{s.kind}/{s.source}/{s.key}".startswith(wanted)
    ]

    def text(rows: list[dict[str, object]]) -> str:
        lines = []
        for r in rows:
            line = f"{r['kind']}/{r['key']} ({r['source']}): {r['state']}"
            if r.get("reason"):
                line += f": {r['reason']}"
            lines.append(line)
            lines += [f"    warning: {w}" for w in r.get("warnings", [])]  # type: ignore[attr-defined]
            lines += _conditions("    ", r.get("conditions", []))
            if r.get("addresses"):
                lines.append(f"    addresses: {', '.join(r['addresses'])}")  # type: ignore[arg-type]
            for lst in r.get("listeners", []):  # type: ignore[attr-defined]
                lines.append(f"    listener {lst['name']}: attachedRoutes={lst.get('attachedRoutes', 0)}")
                lines += _conditions("      ", lst.get("conditions", []))
            for parent in r.get("parents", []):  # type: ignore[attr-defined]
                ref = parent["parentRef"]
                where = "".join(f" {k}={ref[k]}" for k in ("sectionName", "port") if k in ref)
                lines.append(f"    parent {ref['kind']} {ref['namespace']}/{ref['name']}{where}:")
                lines += _conditions("      ", parent.get("conditions", []))
        return "\n".join(lines) + ("\n" if lines else "no status recorded\n")

    emit(args, rows, text)
    return 0 if not wanted or rows else 1


def _conditions(indent: str, conditions: object) -> list[str]:
    """Gateway API conditions, one a line: `Accepted=True (Accepted): message`."""
    out = []
    for c in conditions if isinstance(conditions, list) else []:
        line = f"{indent}{c['type']}={c['status']} ({c['reason']})"
        if c.get("message"):
            line += f": {c['message']}"
        out.append(line)
    return out
