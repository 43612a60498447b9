"""The `xdsbus` command: ledger tools, replay and status, plus the subcommands installed packages add.

Packages add subcommands through the entry-point group `xdsbus.commands` (xdsbus-dev adds `up`), so this
module never imports a development package and an image without one simply lacks its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import logging
import sys
from collections.abc import Awaitable, Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol, cast

from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.cli import (
    completion,
    errors,
    flags,
    keyring_cmd,
    layout_cmd,
    ledger_cmds,
    proxy_cmds,
    replay_cmd,
    rollback_cmd,
    status_cmd,
)
from xdsbus.ledger import reader

COMMANDS_GROUP = "xdsbus.commands"


class Command(Protocol):
    """What an entry point of `xdsbus.commands` names (usually a module): a subcommand that runs itself."""

    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def installed_commands() -> dict[str, Command]:
    """The subcommands installed packages register, by name."""
    return {ep.name: cast(Command, ep.load()) for ep in entry_points(group=COMMANDS_GROUP)}


def parse_time(text: str) -> datetime.datetime:
    """An ISO 8601 time (naive means UTC) or unix seconds."""
    try:
        return datetime.datetime.fromtimestamp(float(text), tz=datetime.UTC)
    except ValueError:
        pass
    when = datetime.datetime.fromisoformat(text)
    return when if when.tzinfo else when.replace(tzinfo=datetime.UTC)


def build_parser(extra: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """All subcommands and their flags; `extra` adds installed subcommands. The global flags
    (`flags.global_flags`, the parent `common`) go on the main parser and on every subcommand that talks
    to NATS, so they work before and after the subcommand."""
    common = flags.global_flags()

    parser = argparse.ArgumentParser(prog="xdsbus", description="xdsbus control plane tools")
    flags.add_global_flags(parser)
    parser.add_argument("--version", action="version", version=flags.version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ledger = sub.add_parser("ledger", parents=[common], help="read the ledger").add_subparsers(
        dest="ledger_command", required=True, metavar="COMMAND"
    )
    log = ledger.add_parser("log", parents=[common], help="list versions, newest last")
    log.add_argument("--limit", type=int, default=0, help="only the last N versions")
    log.add_argument(
        "--terms", action="store_true", help="also list term records (each builder's start of leadership)"
    )
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
    replay.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="show private keys in clear (needs the keyring: XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE)",
    )
    replay.set_defaults(run=replay_cmd.replay)

    dump = sub.add_parser("dump", parents=[common], help="write a ledger version as Envoy config JSON")
    dump.add_argument("directory", type=Path)
    dump.add_argument("--version", type=int, default=0, help="default: the head")
    dump.add_argument(
        "--reveal-secrets",
        action="store_true",
        help="show private keys in clear (needs the keyring: XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE)",
    )
    dump.set_defaults(run=ledger_cmds.dump)

    status = sub.add_parser("status", parents=[common], help="what the builder decided about each object")
    status.add_argument("object", nargs="?", default="", help="KIND/NAMESPACE/NAME or a prefix of it")
    status.set_defaults(run=status_cmd.status)

    rollback = sub.add_parser("rollback", parents=[common], help=rollback_cmd.ROLLBACK_HELP)
    unpin = sub.add_parser("unpin", parents=[common], help=rollback_cmd.UNPIN_HELP)
    rollback_cmd.add_arguments(rollback, unpin)

    proxy_status = sub.add_parser("proxy-status", parents=[common], help=proxy_cmds.STATUS_HELP)
    proxy_config = sub.add_parser("proxy-config", parents=[common], help=proxy_cmds.CONFIG_HELP)
    proxy_cmds.add_arguments(proxy_status, proxy_config)
    proxy_status.set_defaults(run=proxy_cmds.proxy_status)
    proxy_config.set_defaults(run=proxy_cmds.proxy_config)

    layout = sub.add_parser("layout", parents=[common], help=layout_cmd.HELP)
    layout_cmd.add_arguments(layout)
    layout.set_defaults(run=None, extra=layout_cmd)

    # Reads and writes a key file only: no NATS connection.
    keyring = sub.add_parser("keyring", help=keyring_cmd.HELP)
    keyring_cmd.add_arguments(keyring)
    keyring.set_defaults(run=None, extra=keyring_cmd)

    # Prints a script only: no NATS connection. It walks the finished parser (`root`).
    shell_completion = sub.add_parser("completion", help=completion.HELP)
    completion.add_arguments(shell_completion)
    shell_completion.set_defaults(run=None, extra=completion, root=parser)

    for name, command in sorted((extra or {}).items()):
        extra_parser = sub.add_parser(name, help=command.HELP)
        command.add_arguments(extra_parser)
        extra_parser.set_defaults(run=None, extra=command)
    return parser


async def _with_bus(
    args: argparse.Namespace, run: Callable[[Bus, argparse.Namespace], Awaitable[int]]
) -> int:
    # A few attempts, not one: a server refusing credentials may reset the connection before its
    # `Authorization Violation` is read, and the message should name the refusal.
    bus = await connect(BusSettings.from_env(args.nats_url), name="xdsbus-cli", attempts=3)
    try:
        return await run(bus, args)
    except reader.VersionNotFound as exc:
        if isinstance(exc, reader.HistoryPurged) or await reader.head(bus, args.scope) is not None:
            raise
        raise await errors.no_ledger(bus, args.scope) from None
    finally:
        await bus.close()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the xdsbus command."""
    args = flags.resolve(build_parser(installed_commands()).parse_args(argv))
    extra: Command | None = getattr(args, "extra", None)
    if extra is not None:
        return extra.run(args)
    # The final error says what the retries and warnings would: print errors only (a permission
    # refusal, say), as `xdsbus: ...`.
    logging.basicConfig(level=logging.ERROR, format="xdsbus: %(message)s")
    try:
        return asyncio.run(_with_bus(args, args.run))
    except Exception as exc:
        explained = errors.explain(exc, args)
        if explained is None:
            raise
        sys.stderr.write(explained.render())
        return explained.status


if __name__ == "__main__":
    raise SystemExit(main())
