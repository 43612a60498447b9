"""`xdsbus layout [--apply] [--replicas N]` (docs/design.md §9): the layout every service expects, and how
the server differs from it; with --apply, create what is missing and reshape what can be reshaped.

Settings come from the environment as for every service (XDSBUS_NATS_REPLICAS, XDSBUS_LEASE_TTL, the
XDSBUS_*_MAX_BYTES caps); --replicas overrides the first. Exit status: 0 when the server matches (after
--apply, when nothing is left that cannot be changed in place), 1 when it differs, 2 when it cannot be
read or changed."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys

import nats
from nats.errors import Error as NatsError
from nats.errors import NoServersError

from xdsbus import header_parsing, layout
from xdsbus.cli.errors import UNREACHABLE_HINT
from xdsbus.layout import LayoutSettings
from xdsbus.nats_options import NatsOptions, NatsOptionsError, error_callback, redact_url


def run(args: argparse.Namespace) -> int:
    """Print the layout and the differences; apply them with --apply."""
    try:
        settings = LayoutSettings.from_env()
    except ValueError as exc:
        print(f"xdsbus layout: {exc}", file=sys.stderr)
        return 2
    if args.replicas:
        settings = dataclasses.replace(settings, replicas=args.replicas)
    try:
        return asyncio.run(_run(NatsOptions.from_env(args.nats_url), settings, args.apply))
    except NatsOptionsError as exc:
        print(f"xdsbus layout: {exc}", file=sys.stderr)
        return 2
    except (OSError, NoServersError, TimeoutError, NatsError) as exc:
        where = redact_url(args.nats_url)
        print(f"xdsbus layout: cannot reach or change NATS at {where}: {exc}", file=sys.stderr)
        print(f"hint: {UNREACHABLE_HINT}", file=sys.stderr)
        return 2


async def _run(options: NatsOptions, settings: LayoutSettings, apply: bool) -> int:
    nc = await nats.connect(
        **options.connect_kwargs(),
        name="xdsbus-layout",
        connect_timeout=2,
        max_reconnect_attempts=3,
        error_cb=error_callback("xdsbus-layout", options),
    )
    header_parsing.install(nc)
    try:
        js = nc.jetstream(timeout=10)
        print("layout:")
        print(_indent(layout.render(layout.desired(settings))))
        differences = await layout.compare(js, settings)
        if not differences:
            print("the server matches the layout")
            return 0
        print("differences:")
        print(_indent("\n".join(d.describe() for d in differences)))
        if not apply:
            print("run `xdsbus layout --apply` to create and reshape them")
            return 1
        refused = await layout.apply(js, settings)
        for d in refused:
            print(
                f"xdsbus layout: refusing to change {d.spec.describe()}: {d.setting} cannot be changed in "
                f"place (it is {d.have!r}, the layout wants {d.want!r}); back its data up and recreate it",
                file=sys.stderr,
            )
        if refused:
            return 1
        print("applied")
        return 0
    finally:
        await nc.close()


def _indent(text: str) -> str:
    return "\n".join(f"  {line}" for line in text.splitlines())
