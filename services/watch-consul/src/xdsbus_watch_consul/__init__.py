"""xdsbus Consul source: watches the Consul registries of McpBridge and publishes their services."""

from xdsbus_watch_consul.registry import ConsulError, ConsulRegistry

__all__ = ["ConsulError", "ConsulRegistry"]
