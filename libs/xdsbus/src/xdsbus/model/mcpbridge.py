"""Typed view of Higress's McpBridge (networking.higress.io/v1): which registries to watch.

Only `higress-system/default` is honoured, as in Higress. Durations (`*RefreshInterval`) are int64
nanoseconds in the CRD.
"""

from __future__ import annotations

import msgspec

from xdsbus.model.k8s import ObjectMeta

MCPBRIDGE_KIND = "McpBridge"
MCPBRIDGE_KEY = "higress-system/default"


class VportService(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    name: str
    value: int


class Vport(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    default: int = 0
    services: list[VportService] = []


class RegistryConfig(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    """One `spec.registries[]` entry; `type/name` identifies it."""

    type: str
    name: str = ""
    domain: str = ""
    port: int = 0
    nacos_address_server: str = ""
    nacos_access_key: str = ""
    nacos_secret_key: str = ""
    nacos_namespace_id: str = ""
    nacos_namespace: str = ""
    nacos_groups: list[str] = []
    nacos_refresh_interval: int = 0
    consul_namespace: str = ""
    consul_datacenter: str = ""
    consul_service_tag: str = ""
    consul_refresh_interval: int = 0
    auth_secret_name: str = ""
    protocol: str = ""
    sni: str = ""
    vport: Vport | None = None

    @property
    def key(self) -> str:
        """`type/name`, the identity Higress diffs registries by; also the event source of the
        registry's services."""
        return f"{self.type}/{self.name}"

    def vport_for(self, service: str) -> int:
        """The `vport` override of a service: the entry whose name matches case-insensitively, else the
        default; 0 when there is none (a value that is no port counts as none)."""
        if self.vport is None:
            return 0
        for entry in self.vport.services:
            if entry.name.lower() == service.lower() and entry.value > 0:
                return entry.value
        return max(self.vport.default, 0)


class McpBridgeSpec(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    registries: list[RegistryConfig] = []


class K8sMcpBridge(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    metadata: ObjectMeta
    spec: McpBridgeSpec = msgspec.field(default_factory=McpBridgeSpec)
