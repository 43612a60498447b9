"""`xdsbus-watch-eureka`: the shared registry-watcher service (McpBridge from the event log, one watch per
registry, one publishing replica) running `EurekaRegistry` for the `eureka` entries."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from xdsbus.registry.service_main import run_registry_service
from xdsbus_watch_eureka.registry import EurekaRegistry, poll_interval_from_env


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `xdsbus-watch-eureka`; returns the exit status (0 after SIGTERM/SIGINT, 2 on bad
    flags, a bad XDSBUS_EUREKA_POLL_INTERVAL or no usable secret key)."""
    try:
        # Checked here, once, rather than failing every registry the McpBridge names.
        poll_interval_from_env()
    except ValueError as exc:
        print(f"xdsbus-watch-eureka: {exc}", file=sys.stderr)
        return 2
    return run_registry_service(argv, types={"eureka"}, factory=EurekaRegistry, prog="xdsbus-watch-eureka")


if __name__ == "__main__":
    raise SystemExit(main())
