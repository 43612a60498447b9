"""What registry watchers publish: one normalized service per event, under its Higress hostname.

Event contract: source `<registry type>/<registry name>` (`nacos/prod`, `consul/dc1`, `eureka/main`), kind
`RegistryService`, key = the Higress hostname, body = `RegistryService`. A resync of the source lists
every service the registry has, so services that vanished while the watcher was away are removed.
"""

from __future__ import annotations

import msgspec

REGISTRY_SERVICE_KIND = "RegistryService"

# Instance metadata `protocol` (any case) -> `RegistryService.protocol`, for the registries that map it
# as Higress' Nacos watcher does: grpc/triple/tri (Dubbo 3 over gRPC) are gRPC; http2/h2c/https/grpcs
# name the builder's other protocols.
METADATA_PROTOCOLS = {
    "http": "HTTP",
    "https": "HTTPS",
    "http2": "HTTP2",
    "h2c": "HTTP2",
    "grpc": "GRPC",
    "grpcs": "GRPCS",
    "triple": "GRPC",
    "tri": "GRPC",
}


class RegistryEndpoint(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, order=True):
    """One instance of a registry service."""

    address: str
    port: int
    weight: int = 1
    healthy: bool = True
    zone: str = ""
    metadata: dict[str, str] = {}


class RegistryService(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A registry service as the builder turns it into a cluster `outbound|<port>||<hostname>`.

    `port` is the service port routes use (Higress: the vport override, else the first instance's
    port); `protocol` is HTTP, HTTP2, GRPC, HTTPS or GRPCS (from instance metadata `protocol`).
    Endpoints are sorted by (address, port) so equal content gives equal bytes.
    """

    hostname: str
    registry_type: str
    registry: str
    service: str
    port: int
    protocol: str = "HTTP"
    endpoints: list[RegistryEndpoint] = []
