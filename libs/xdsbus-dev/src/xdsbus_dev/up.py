"""`xdsbus up`: the whole local stack as child processes (local_stack.py), stopped together on Ctrl-C.

A subcommand of the core `xdsbus` CLI through the `xdsbus.commands` entry point of this package. The
CLI loads this module for every command, `--help` included, so it holds only the flags: the stack's
imports (nats, the certificate tools) wait until `up` runs."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

HELP = "run the whole local stack"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `xdsbus up`."""
    parser.add_argument("--config-dir", type=Path, default=Path("examples"))
    parser.add_argument("--data-dir", type=Path, default=Path(".data"))
    parser.add_argument(
        "--gateway-http-port", type=int, default=int(os.environ.get("XDSBUS_GATEWAY_HTTP_PORT", "10080"))
    )


def run(args: argparse.Namespace) -> int:
    """Run the stack until Ctrl-C."""
    from xdsbus_dev.local_stack import run_stack

    return asyncio.run(run_stack(args))
