"""The CLI's global flags work before and after the subcommand, nested ones included, with the
environment and defaults filling in what is not given (docs/design.md §9); `xdsbus --version`."""

from __future__ import annotations

import argparse

import pytest

from xdsbus.cli import flags
from xdsbus.cli.main import main
from xdsbus.cli.parser import build_parser, installed_commands

URL = "nats://10.0.0.9:4222"


def parse(argv: list[str], environ: dict[str, str] | None = None) -> argparse.Namespace:
    return flags.resolve(build_parser(installed_commands()).parse_args(argv), environ or {})


@pytest.mark.parametrize(
    "argv",
    [
        ["--nats-url", URL, "--scope", "s", "--json", "ledger", "log"],
        ["ledger", "log", "--nats-url", URL, "--scope", "s", "--json"],
        ["--json", "ledger", "--scope", "s", "log", "--nats-url", URL],
        ["--nats-url", URL, "ledger", "log", "--scope", "s", "--json"],
    ],
)
def test_global_flags_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = parse(argv)
    assert (args.nats_url, args.scope, args.json, args.ledger_command) == (URL, "s", True, "log")


def test_a_flag_after_the_subcommand_wins_over_one_before() -> None:
    args = parse(["--scope", "first", "ledger", "show", "3", "--scope", "second"])
    assert (args.scope, args.version) == ("second", 3)


def test_the_environment_and_defaults_fill_in_flags_not_given() -> None:
    args = parse(["dump", "out", "--version", "4"], {"XDSBUS_NATS_URL": URL, "XDSBUS_SCOPE": "gw"})
    assert (args.nats_url, args.scope, args.json, args.version) == (URL, "gw", False, 4)
    given = parse(["--scope", "s", "replay", "--seq", "5"], {"XDSBUS_SCOPE": "gw"})
    assert (given.nats_url, given.scope, given.seq) == ("nats://127.0.0.1:4222", "s", 5)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("xdsbus 0.1.0 (xdsbus-translate/")


def test_an_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["ledger", "log", "--no-such-flag"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err
