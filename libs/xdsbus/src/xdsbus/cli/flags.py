"""The CLI's global flags (docs/design.md §9): `--nats-url`, `--scope` and `--json`, taken before the
subcommand or after it, and `--version`.

argparse copies every default of a subcommand's parser over what the main parser read before the
subcommand, so a flag given first would be lost: the flags are added without defaults (SUPPRESS) at
every level, and `resolve` fills in the environment and the defaults once, after parsing."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from importlib.metadata import PackageNotFoundError, version

from xdsbus.nats_options import DEFAULT_NATS_URL
from xdsbus.translate.settings import TRANSLATOR_VERSION

NATS_URL_ENV = "XDSBUS_NATS_URL"
SCOPE_ENV = "XDSBUS_SCOPE"
DEFAULT_SCOPE = "default"


def add_global_flags(parser: argparse.ArgumentParser) -> None:
    """Add `--nats-url`, `--scope` and `--json` to `parser`, unset unless given."""
    parser.add_argument(
        "--nats-url",
        default=argparse.SUPPRESS,
        metavar="URL",
        help=f"NATS server, comma-separate a cluster's (default: ${NATS_URL_ENV} or {DEFAULT_NATS_URL})",
    )
    parser.add_argument(
        "--scope",
        default=argparse.SUPPRESS,
        help=f"the ledger scope (default: ${SCOPE_ENV} or {DEFAULT_SCOPE})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="machine-readable output (and no progress bar)",
    )


def global_flags() -> argparse.ArgumentParser:
    """A parent parser (`parents=[...]`) giving a subcommand the global flags."""
    common = argparse.ArgumentParser(add_help=False)
    add_global_flags(common)
    return common


def resolve(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> argparse.Namespace:
    """Fill in the global flags not given: from the environment, else their defaults."""
    if not hasattr(args, "nats_url"):
        args.nats_url = environ.get(NATS_URL_ENV) or DEFAULT_NATS_URL
    if not hasattr(args, "scope"):
        args.scope = environ.get(SCOPE_ENV) or DEFAULT_SCOPE
    if not hasattr(args, "json"):
        args.json = False
    return args


def version_text() -> str:
    """`xdsbus 0.1.0 (xdsbus-translate/3)`: the installed package and the translator it runs."""
    try:
        installed = version("xdsbus")
    except PackageNotFoundError:
        installed = "unknown (not installed)"
    return f"xdsbus {installed} ({TRANSLATOR_VERSION})"
