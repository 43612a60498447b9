"""xdsbus Eureka source: each McpBridge `eureka` registry polled (apps, then delta with the hashcode check)
and published as registry services `<APPNAME>.eureka`."""

from xdsbus_watch_eureka.registry import EurekaRegistry

__all__ = ["EurekaRegistry"]
