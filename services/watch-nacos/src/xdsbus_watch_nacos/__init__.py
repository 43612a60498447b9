"""xdsbus Nacos source: watches the Nacos registries of McpBridge and publishes their services."""
