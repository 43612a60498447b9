"""`xdsbus --help`, completion and `keyring` start without importing what the NATS commands run (nats,
protobuf's generated ledger types, the translator): that import is most of a command's start-up time."""

from __future__ import annotations

import subprocess
import sys

from xdsbus.cli import proxy_cmds
from xdsbus.cli.parser import PROXY_TYPES, Lazy, build_parser, installed_commands

HEAVY = ("nats", "xdsbus.translate.translator", "xdsbus.bus", "google.protobuf")

PROBE = """
import sys
from xdsbus.cli.main import main
try:
    main({argv!r})
except SystemExit:
    pass
print("imported:" + ",".join(name for name in {heavy!r} if name in sys.modules), file=sys.stderr)
"""


def imported_by(argv: list[str]) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running `xdsbus ARGV`."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv, heavy=HEAVY)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith("imported:"), done.stderr
    return [name for name in line.removeprefix("imported:").split(",") if name]


def test_help_and_completion_import_nothing_heavy() -> None:
    assert imported_by(["--help"]) == []
    assert imported_by(["ledger", "log", "--help"]) == []
    assert imported_by(["completion", "bash"]) == []


def test_every_lazy_command_resolves_to_a_function() -> None:
    parser = build_parser(installed_commands())
    subparsers = next(action for action in parser._actions if action.dest == "command")
    lazies: list[Lazy] = []
    pending = list(subparsers.choices.values())  # type: ignore[union-attr]
    while pending:
        sub = pending.pop()
        for key in ("run", "extra"):
            target = sub.get_default(key)
            if isinstance(target, Lazy):
                lazies.append(target)
        for action in sub._actions:
            if action.dest == "ledger_command":
                pending.extend(action.choices.values())  # type: ignore[union-attr]
    assert len(lazies) >= 10
    for lazy in lazies:
        assert callable(lazy.load()), lazy


def test_proxy_config_types_are_the_ones_it_maps() -> None:
    assert sorted(PROXY_TYPES) == sorted(proxy_cmds.TYPES)
