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
        return "\n".join(lines) + ("\n" if lines else "no status recorded\n")

    emit(args, rows, text)
    return 0 if not wanted or rows else 1
