"""`xdsbus-watch-nacos`: the registry-watcher machinery (McpBridge following, one `NacosRegistry` per
nacos/nacos2/nacos3 entry, publishing, leader election) with this package's client."""

from __future__ import annotations

from collections.abc import Sequence

from xdsbus.registry.service_main import run_registry_service
from xdsbus_watch_nacos.registry import NACOS_TYPES, NacosRegistry


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGTERM/SIGINT; the exit status."""
    return run_registry_service(
        argv, types=set(NACOS_TYPES), factory=NacosRegistry, prog="xdsbus-watch-nacos"
    )
