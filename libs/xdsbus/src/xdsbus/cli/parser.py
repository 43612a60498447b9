"""The `xdsbus` command line: every subcommand and its flags, without importing what the commands run.

The command modules import nats, protobuf and the translator, about 0.7 s; `--help`, a shell's completion
and a typo should not pay for that. So a subcommand names its function with a `Lazy` reference, imported
only when that subcommand runs, and the flags of every subcommand are declared here. Packages add
subcommands through the entry-point group `xdsbus.commands` (xdsbus-dev adds `up`); such a module must
itself be light to import (the CLI loads it for every command)."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol, cast

from xdsbus.cli import completion, flags, keyring_cmd

COMMANDS_GROUP = "xdsbus.commands"

# proxy-config --type, as istioctl names them (proxy_cmds.TYPES maps them to type URLs).
PROXY_TYPES = ("clusters", "endpoints", "extensions", "listeners", "routes", "secrets")
REVEAL_SECRETS_HELP = (
    "show private keys in clear (needs the keyring: XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE)"
)


class Command(Protocol):
    """What an entry point of `xdsbus.commands` names (usually a module): a subcommand that runs itself."""

    HELP: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


@dataclasses.dataclass(frozen=True)
class Lazy:
    """A function named by its module and name, imported when called for."""

    module: str
    name: str

    def load(self) -> Any:
        """The function itself."""
        return getattr(importlib.import_module(self.module), self.name)


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
    """All subcommands and their flags; `extra` adds installed subcommands.

    A subcommand that talks to NATS sets `run` (a Lazy async function of the bus and the arguments); one
    that does not sets `run=None` and `extra` (a Lazy or a function of the arguments). The global flags
    (`flags.global_flags`, the parent `common`) go on the main parser and on every subcommand that talks
    to NATS, so they work before and after the subcommand."""
    common = flags.global_flags()

    parser = argparse.ArgumentParser(prog="xdsbus", description="xdsbus control plane tools")
    flags.add_global_flags(parser)
    parser.add_argument("--version", action="version", version=flags.version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _ledger_commands(sub, common)
    _replay_and_dump(sub, common)

    status = sub.add_parser("status", parents=[common], help="what the builder decided about each object")
    status.add_argument("object", nargs="?", default="", help="KIND/NAMESPACE/NAME or a prefix of it")
    status.set_defaults(run=Lazy("xdsbus.cli.status_cmd", "status"))

    _pin_commands(sub, common)
    _proxy_commands(sub, common)

    layout = sub.add_parser(
        "layout",
        parents=[common],
        help="show the NATS layout and how the server differs; --apply creates and reshapes it",
    )
    layout.add_argument("--apply", action="store_true", help="create missing objects, reshape the others")
    layout.add_argument("--replicas", type=int, default=0, help="replicas (default: XDSBUS_NATS_REPLICAS)")
    layout.set_defaults(run=None, extra=Lazy("xdsbus.cli.layout_cmd", "run"))

    # Reads and writes a key file only: no NATS connection.
    keyring = sub.add_parser("keyring", help=keyring_cmd.HELP)
    keyring_cmd.add_arguments(keyring)
    keyring.set_defaults(run=None, extra=keyring_cmd.run)

    # Prints a script only: no NATS connection. It walks the finished parser (`root`).
    shell_completion = sub.add_parser("completion", help=completion.HELP)
    completion.add_arguments(shell_completion)
    shell_completion.set_defaults(run=None, extra=completion.run, root=parser)

    for name, command in sorted((extra or {}).items()):
        extra_parser = sub.add_parser(name, help=command.HELP)
        command.add_arguments(extra_parser)
        extra_parser.set_defaults(run=None, extra=command.run)
    return parser


def _ledger_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    ledger = sub.add_parser("ledger", parents=[common], help="read the ledger").add_subparsers(
        dest="ledger_command", required=True, metavar="COMMAND"
    )
    log = ledger.add_parser("log", parents=[common], help="list versions, newest last")
    log.add_argument("--limit", type=int, default=0, help="only the last N versions")
    log.add_argument(
        "--terms", action="store_true", help="also list term records (each builder's start of leadership)"
    )
    log.set_defaults(run=Lazy("xdsbus.cli.ledger_cmds", "log"))
    show = ledger.add_parser("show", parents=[common], help="one version's record")
    show.add_argument("version", type=int)
    show.add_argument("--resources", action="store_true", help="also list every resource at that version")
    show.set_defaults(run=Lazy("xdsbus.cli.ledger_cmds", "show"))
    diff = ledger.add_parser("diff", parents=[common], help="what changed between two versions")
    diff.add_argument("a", type=int)
    diff.add_argument("b", type=int)
    diff.set_defaults(run=Lazy("xdsbus.cli.ledger_cmds", "diff"))


def _replay_and_dump(sub: Any, common: argparse.ArgumentParser) -> None:
    replay = sub.add_parser("replay", parents=[common], help="rebuild the configuration at a past point")
    target = replay.add_mutually_exclusive_group(required=True)
    target.add_argument("--seq", type=int, help="event sequence (a ledger version)")
    target.add_argument("--at", type=parse_time, help="time: ISO 8601 or unix seconds")
    replay.add_argument(
        "--dump", type=Path, help="write the version as Envoy config JSON into this directory"
    )
    replay.add_argument("--reveal-secrets", action="store_true", help=REVEAL_SECRETS_HELP)
    replay.set_defaults(run=Lazy("xdsbus.cli.replay_cmd", "replay"))

    dump = sub.add_parser("dump", parents=[common], help="write a ledger version as Envoy config JSON")
    dump.add_argument("directory", type=Path)
    dump.add_argument("--version", type=int, default=0, help="default: the head")
    dump.add_argument("--reveal-secrets", action="store_true", help=REVEAL_SECRETS_HELP)
    dump.set_defaults(run=Lazy("xdsbus.cli.ledger_cmds", "dump"))


def _pin_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """`rollback` and `unpin` (docs/rollback.md; each has the common flags, --scope included)."""
    rollback = sub.add_parser(
        "rollback",
        parents=[common],
        help="pin a scope to a past version's resources: the builder publishes them as a new version",
    )
    unpin = sub.add_parser(
        "unpin",
        parents=[common],
        help="release a scope's pin: the builder publishes what it folded meanwhile",
    )
    rollback.add_argument("version", type=int, help="the ledger version whose resources the scope serves")
    rollback.add_argument("--reason", default="", help="why, for the record (status, ledger, console)")
    for parser in (rollback, unpin):
        parser.add_argument("--operator", help="who asks (default: XDSBUS_OPERATOR, else the login name)")
        parser.add_argument(
            "--timeout",
            type=float,
            default=30.0,
            help="seconds to wait for the builder's verdict (0: publish and return)",
        )
    rollback.set_defaults(run=Lazy("xdsbus.cli.rollback_cmd", "rollback_scope"))
    unpin.set_defaults(run=Lazy("xdsbus.cli.rollback_cmd", "unpin_scope"))


def _proxy_commands(sub: Any, common: argparse.ArgumentParser) -> None:
    """`proxy-status` and `proxy-config` (docs/proxy-status.md)."""
    status = sub.add_parser(
        "proxy-status",
        parents=[common],
        help="every proxy's sync state across all edges, per type, against its scope's ledger head",
    )
    config = sub.add_parser(
        "proxy-config",
        parents=[common],
        help="what one proxy was sent: the resources of each type it holds, private keys redacted",
    )
    status.add_argument("proxy", nargs="?", default="", help="only proxies whose node id starts with this")
    config.add_argument("proxy", help="the proxy's node id (or a prefix naming one proxy)")
    config.add_argument(
        "--type",
        choices=PROXY_TYPES,
        action="append",
        help="only this type (repeatable); default: every type the proxy subscribed to",
    )
    for parser in (status, config):
        parser.add_argument(
            "-o", "--output", choices=("table", "json"), default="table", help="json: the same as --json"
        )
    status.set_defaults(run=Lazy("xdsbus.cli.proxy_cmds", "proxy_status"))
    config.set_defaults(run=Lazy("xdsbus.cli.proxy_cmds", "proxy_config"))
