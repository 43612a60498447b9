"""The narrow views handlers read each other's indexes through, given at construction.

A handler never reaches into another's state: the Ingress and Gateway API handlers look services up and
use TLS secrets through these, and the registries claim hostnames in the services' index through one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

import msgspec

from xdsbus.fold.state import ObjectRef
from xdsbus.model.services import ServiceModel
from xdsbus.translate.registry_services import RegistryEndpoints


class ServiceClaim(msgspec.Struct, frozen=True, gc=False):
    """An object's claim on a service hostname; of several, the oldest (then the first ref) wins. Frozen
    structs and strings: no cycle, hence gc=False.

    endpoints: the claim's own endpoints (a RegistryService's); None for the EndpointSlices or Endpoints
    of the claim's source, as a Kubernetes Service has."""

    ref: ObjectRef
    created: str
    model: ServiceModel
    endpoints: RegistryEndpoints | None = None


class ServiceModels(Protocol):
    """Looks services up by hostname."""

    def model(self, host: str) -> ServiceModel | None:
        """The service serving `host`, if any."""
        ...


class ServiceClaims(Protocol):
    """Adds and withdraws claims on service hostnames."""

    def claim(self, claim: ServiceClaim) -> str:
        """Add a claim; returns its hostname."""
        ...

    def release(self, ref: ObjectRef) -> str | None:
        """Withdraw `ref`'s claim; returns the hostname it claimed, if it had one."""
        ...


class TlsSecrets(Protocol):
    """The SDS secrets the Secrets provide, and which owner (a host, the Gateway API) references them."""

    def holds(self, name: str, certificate: bool) -> bool:
        """Whether an SDS name is provided, as a certificate with its key or as a CA bundle."""
        ...

    def set_used(self, owner: str, names: Iterable[str], watched: Iterable[str] = ()) -> None:
        """Make `names` exactly what `owner` references (published) and `watched` what it waits for."""
        ...

    def users(self, names: Iterable[str]) -> set[str]:
        """Owners referencing or waiting for any of these names."""
        ...
