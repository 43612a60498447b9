"""`xdsbus-watch-eureka`: the shared registry-watcher service (McpBridge from the event log, one watch per
registry, one publishing replica) running `EurekaRegistry` for the `eureka` entries."""

from __future__ import annotations

from collections.abc import Sequence

from xdsbus.registry.service_main import run_registry_service
from xdsbus.service_flags import ServiceParser, positive_float
from xdsbus_watch_eureka.registry import POLL_INTERVAL_ENV, EurekaRegistry


def _eureka_settings(parser: ServiceParser) -> None:
    # Checked here, once, rather than failing every registry the McpBridge names.
    parser.env_setting(POLL_INTERVAL_ENV, type=positive_float, help="seconds between polls of each registry")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `xdsbus-watch-eureka`; returns the exit status (0 after SIGTERM/SIGINT, 2 on a bad
    flag or variable, XDSBUS_EUREKA_POLL_INTERVAL included, or no usable secret key)."""
    return run_registry_service(
        argv, types={"eureka"}, factory=EurekaRegistry, prog="xdsbus-watch-eureka", configure=_eureka_settings
    )


if __name__ == "__main__":
    raise SystemExit(main())
