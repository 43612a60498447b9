"""A subcommand that talks to NATS, run: connect, call it, close, and turn a failure the user can fix
into a message and a `hint:` line (errors.py)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable

from xdsbus.bus import Bus, BusSettings, connect
from xdsbus.cli import errors
from xdsbus.ledger import reader


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


def run_with_bus(args: argparse.Namespace, run: Callable[[Bus, argparse.Namespace], Awaitable[int]]) -> int:
    """Run `run` with a connection to NATS; its exit status, or 1–2 with a message on stderr."""
    # The final error says what the retries and warnings would: print errors only (a permission
    # refusal, say), as `xdsbus: ...`.
    logging.basicConfig(level=logging.ERROR, format="xdsbus: %(message)s")
    try:
        return asyncio.run(_with_bus(args, run))
    except Exception as exc:
        explained = errors.explain(exc, args)
        if explained is None:
            raise
        sys.stderr.write(explained.render())
        return explained.status
