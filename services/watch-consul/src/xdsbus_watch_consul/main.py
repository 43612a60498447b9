"""`xdsbus-watch-consul`: the registry machinery of `xdsbus.registry` running `ConsulRegistry` for the
McpBridge registries of type `consul`."""

from __future__ import annotations

from collections.abc import Sequence

from xdsbus.registry.service_main import run_registry_service
from xdsbus_watch_consul.registry import ConsulRegistry


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `xdsbus-watch-consul`; returns the exit status (0 after SIGTERM/SIGINT)."""
    return run_registry_service(argv, types={"consul"}, factory=ConsulRegistry, prog="xdsbus-watch-consul")


if __name__ == "__main__":
    raise SystemExit(main())
