"""The `xdsbus` command: ledger tools, replay and status, plus the subcommands installed packages add.

Packages add subcommands through the entry-point group `xdsbus.commands` (xdsbus-dev adds `up`), so this
module never imports a development package and an image without one simply lacks its subcommands. The
subcommands and their flags are in parser.py; what they run is imported only once one is chosen."""

from __future__ import annotations

import importlib

from xdsbus.cli import flags
from xdsbus.cli.parser import Lazy, build_parser, installed_commands


def main(argv: list[str] | None = None) -> int:
    """Entry point of the xdsbus command."""
    args = flags.resolve(build_parser(installed_commands()).parse_args(argv))
    extra = getattr(args, "extra", None)
    if extra is not None:
        runner = extra.load() if isinstance(extra, Lazy) else extra
        status: int = runner(args)
        return status
    # Imported here, not at the top: it brings in nats and the ledger reader, which `--help`, completion
    # and the commands without NATS do without.
    session = importlib.import_module("xdsbus.cli.session")
    status = session.run_with_bus(args, args.run.load())
    return status


if __name__ == "__main__":
    raise SystemExit(main())
