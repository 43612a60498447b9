"""The `xdsbus` command: ledger tools, replay, status and the local stack."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from xdsbus import echo
from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.cli import ledger_cmds, replay_cmd, status_cmd, up_cmd


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 time (naive means UTC) or unix seconds."""
    try:
        return datetime.datetime.fromtimestamp(float(text), tz=datetime.UTC)
    except ValueError:
        pass
    when = datetime.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def build_parser() -> argparse.ArgumentParser:
    """All subcommands and their flags."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--nats-url", default=os.environ.get("XDSBUS_NATS_URL", "nats://127.0.0.1:4222"))
    common.add_argument("--scope", default=os.environ.get("XDSBUS_SCOPE", "default"))
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(prog="xdsbus", description="xdsbus control plane tools")
    sub = parser.add_subparsers(dest="command", required=True)

    ledger = sub.add_parser("ledger", help="read the ledger").add_subparsers(
        dest="ledger_command", required=True
    )
    log = ledger.add_parser("log", parents=[common], help="list versions, newest last")
    log.add_argument("--limit", type=int, default=0, help="only the last N versions")
    log.set_defaults(run=ledger_cmds.log)
    show = ledger.add_parser("show", parents=[common], help="one version's record")
    show.add_argument("version", type=int)
    show.add_argument("--resources", action="store_true", help="also list every resource at that version")
    show.set_defaults(run=ledger_cmds.show)
    diff = ledger.add_parser("diff", parents=[common], help="what changed between two versions")
    diff.add_argument("a", type=int)
    diff.add_argument("b", type=int)
    diff.set_defaults(run=ledger_cmds.diff)

    replay = sub.add_parser("replay", parents=[common], help="rebuild the configuration at a past point")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--seq", type=int, help="event sequence (a ledger version)")
    target.add_argument("--at", type=parse_time, help="time: ISO 8601 or unix seconds")
    replay.add_argument(
        "--dump", type=Path, help="write the version as Envoy config JSON into this directory"
    )
    replay.set_defaults(run=replay_cmd.replay)

    dump = sub.add_parser("dump", parents=[common], help="write a ledger version as Envoy config JSON")
    dump.add_argument("directory", type=Path)
    dump.add_argument("--version", type=int, default=0, help="default: the head")
    dump.set_defaults(run=ledger_cmds.dump)

    status = sub.add_parser("status", parents=[common], help="what the builder decided about each object")
    status.add_argument("object", nargs="?", default="", help="KIND/NAMESPACE/NAME or a prefix of it")
    status.set_defaults(run=status_cmd.status)

    up = sub.add_parser("up", help="run the whole local stack")
    up.add_argument("--config-dir", type=Path, default=Path("examples"))
    up.add_argument("--data-dir", type=Path, default=Path(".data"))
    up.add_argument(
        "--gateway-http-port", type=int, default=int(os.environ.get("XDSBUS_GATEWAY_HTTP_PORT", "10080"))
    )
    up.set_defaults(run=None)

    echo_parser = sub.add_parser(
        "echo", help="an echo backend: answers every request with a JSON description of it"
    )
    echo.add_arguments(echo_parser)
    echo_parser.set_defaults(run=None)
    return parser


async def _with_bus(
    args: argparse.Namespace, run: Callable[[Bus, argparse.Namespace], Awaitable[int]]
) -> int:
    bus = await connect(BusSettings.from_env(args.nats_url), name="xdsbus-cli", attempts=3)
    try:
        return await run(bus, args)
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the xdsbus command."""
    args = build_parser().parse_args(argv)
    if args.command == "up":
        return up_cmd.up(args)
    if args.command == "echo":
        return echo.run(args)
    try:
        return asyncio.run(_with_bus(args, args.run))
    except (LookupError, ValueError) as exc:
        print(f"xdsbus: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"xdsbus: cannot reach NATS at {args.nats_url}: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
