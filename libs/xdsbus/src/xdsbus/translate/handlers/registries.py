"""Registries: RegistryServices (what the Nacos, Consul and Eureka watchers publish) and the McpBridge's
`dns` and `static` registries, as claims on service hostnames in the services' index."""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsbus.contract.status import Verdict
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.mcpbridge import MCPBRIDGE_KEY, MCPBRIDGE_KIND
from xdsbus.model.mcpbridge_registries import winning_source
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.translate.handlers.host_folds import HostFolds
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.views import ServiceClaim, ServiceClaims
from xdsbus.translate.registry_services import bridge_services, registry_service
from xdsbus.translate.rejections import rejection_reason

# The kind of the claims an McpBridge's `dns` and `static` registries make (never an event kind).
BRIDGE_SERVICE = "McpBridge/registry"


@dataclass
class RegistryIndex:
    """The claims the winning McpBridge made (RegistryServices are claimed under their own ref)."""

    bridge_claims: list[ObjectRef] = field(default_factory=list)


class RegistriesHandler(HostFolds):
    """Folds RegistryServices and McpBridges into service claims."""

    def __init__(self, services: ServiceClaims, status: StatusBook) -> None:
        self._services = services
        self._status = status
        self.index = RegistryIndex()
        self._folds = {
            REGISTRY_SERVICE_KIND: self._fold_registry_service,
            MCPBRIDGE_KIND: self._fold_mcpbridge,
        }

    def _fold_registry_service(self, state: FoldState, ref: ObjectRef) -> set[str]:
        """Re-read a RegistryService (key: its hostname); returns the hostnames to regenerate."""
        hosts: set[str] = set()
        old_host = self._services.release(ref)
        if old_host is not None:
            hosts.add(old_host)
        stored = state.get(ref)
        if stored is None:
            self._status.clear(ref)
            return hosts
        try:
            translation = registry_service(ref.key, stored.value())
        except Exception as exc:
            self._status.set(ref, Verdict.REJECTED, f"RegistryService {ref.key}: {rejection_reason(exc)}")
            return hosts
        # No creation time: a registry hostname never names a Kubernetes Service; between registries
        # claiming one hostname the first source by name wins (ObjectRef order).
        claim = ServiceClaim(ref=ref, created="", model=translation.model, endpoints=translation.endpoints)
        hosts.add(self._services.claim(claim))
        self._status.set(ref, Verdict.ACCEPTED, warnings=translation.warnings)
        return hosts

    def _fold_mcpbridge(self, state: FoldState, ref: ObjectRef) -> set[str]:
        """Re-read the McpBridge: only `higress-system/default` counts, and of the sources holding one
        the first by name (as the registry watchers decide). Its dns/static registries become services;
        returns the hostnames to regenerate."""
        if ref.key != MCPBRIDGE_KEY:
            if state.get(ref) is None:
                self._status.clear(ref)
            else:
                self._status.set(
                    ref, Verdict.REJECTED, f"McpBridge {ref.key}: ignored, only {MCPBRIDGE_KEY} is used"
                )
            return set()
        hosts: set[str] = set()
        for old in self.index.bridge_claims:
            old_host = self._services.release(old)
            assert old_host is not None
            hosts.add(old_host)
        self.index.bridge_claims = []
        if state.get(ref) is None:
            self._status.clear(ref)
        bridges = state.objects.get(MCPBRIDGE_KIND, {})
        holders = [source for source, objects in bridges.items() if MCPBRIDGE_KEY in objects]
        # The first source by name, as the registry watchers decide.
        winner = winning_source(holders)
        for source in sorted(holders):
            if source != winner:
                self._status.set(
                    ObjectRef(MCPBRIDGE_KIND, source, MCPBRIDGE_KEY),
                    Verdict.REJECTED,
                    f"McpBridge {MCPBRIDGE_KEY}: source {winner} also has one and is used (first by name)",
                )
        if winner is None:
            return hosts
        bridge_ref = ObjectRef(MCPBRIDGE_KIND, winner, MCPBRIDGE_KEY)
        stored = state.get(bridge_ref)
        assert stored is not None
        try:
            translation = bridge_services(stored.value())
        except Exception as exc:
            self._status.set(
                bridge_ref, Verdict.REJECTED, f"McpBridge {MCPBRIDGE_KEY}: {rejection_reason(exc)}"
            )
            return hosts
        for model in translation.services:
            claim_ref = ObjectRef(BRIDGE_SERVICE, winner, model.hostname)
            hosts.add(self._services.claim(ServiceClaim(ref=claim_ref, created="", model=model)))
            self.index.bridge_claims.append(claim_ref)
        self._status.set(bridge_ref, Verdict.ACCEPTED, warnings=translation.warnings)
        return hosts
