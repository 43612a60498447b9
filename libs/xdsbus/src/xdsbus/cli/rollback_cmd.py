"""`xdsbus rollback V [--scope S]` and `xdsbus unpin [--scope S]` (docs/rollback.md).

Both publish a LedgerPin event (source `operator/cli`) as the NATS user `operator`, then wait for the
builder's verdict in `xdsbus status` (kind LedgerPin). Who asks: `--operator`, else XDSBUS_OPERATOR,
else the login name."""

from __future__ import annotations

import argparse
import getpass
import os
from typing import Any

import msgspec

from xdsbus.bus import Bus
from xdsbus.cli.output import emit
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.ledger import pin_requests

TOOL = "cli"


def operator_name(flag: str | None) -> str:
    """Who asks: the flag, else XDSBUS_OPERATOR, else the login name."""
    if flag:
        return flag
    if os.environ.get("XDSBUS_OPERATOR"):
        return os.environ["XDSBUS_OPERATOR"]
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


async def rollback_scope(bus: Bus, args: argparse.Namespace) -> int:
    """Check that the version can be pinned, publish the pin, and report the builder's verdict."""
    target = await pin_requests.check_version(bus, args.scope, args.version)
    return await _request(bus, args, args.version, f"version {target.version}, digest {target.digest}")


async def unpin_scope(bus: Bus, args: argparse.Namespace) -> int:
    """Publish the release of the scope's pin, and report the builder's verdict."""
    return await _request(bus, args, 0, "")


async def _request(bus: Bus, args: argparse.Namespace, version: int, target: str) -> int:
    by = operator_name(args.operator)
    seq = await pin_requests.publish(
        bus, args.scope, version=version, by=by, tool=TOOL, reason=getattr(args, "reason", "")
    )
    status = await pin_requests.verdict(bus, args.scope, seq, args.timeout) if args.timeout > 0 else None
    data: dict[str, Any] = {"scope": args.scope, "event_seq": seq, "operator": by, "version": version}
    if status is not None:
        data["status"] = msgspec.to_builtins(status)

    def text(d: dict[str, Any]) -> str:
        asked = f"pin of scope {d['scope']} to {target}" if version else f"release of scope {d['scope']}"
        lines = [f"{asked}: event {seq}, by {by}"]
        if status is not None:
            lines.append(f"builder: {status.state}: {status.reason}")
        elif args.timeout > 0:
            lines.append(f"no verdict from a builder of scope {d['scope']} within {args.timeout:g}s")
        return "\n".join(lines) + "\n"

    emit(args, data, text)
    return _exit_status(status, args.timeout)


def _exit_status(status: ObjectStatus | None, timeout: float) -> int:
    if status is None:
        return 0 if timeout <= 0 else 1
    return 0 if status.state is Verdict.ACCEPTED else 1
