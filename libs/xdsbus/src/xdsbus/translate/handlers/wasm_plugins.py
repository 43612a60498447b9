"""WasmPlugins: each planned into filter instances (translate/wasm_plugins/), their configurations
published as ECDS resources, and the chain the connection managers and routes read (docs/wasm-plugins.md).

A plugin that cannot be applied is rejected alone and takes no part in the chain; what an earlier version
of it published is withdrawn, since a full build (replay, restart) never sees that version.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from typing import Protocol

from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import EXTENSION_CONFIG
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.handlers.views import ServiceModels
from xdsbus.translate.rejections import rejection_reason
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.wasm_plugins.chain import PluginChain, domain_matches
from xdsbus.translate.wasm_plugins.envoy_wasm import extension_config, filter_name
from xdsbus.translate.wasm_plugins.plan import PluginError, PluginPlan, plan_plugin
from xdsbus.translate.wasm_plugins.spec import decode_plugin

WASM_PLUGIN = "WasmPlugin"

PluginKey = tuple[str, str]


class RouteTargets(Protocol):
    """What the routes are built from, to tell a rule that names nothing served."""

    def ingress_keys(self) -> Set[str]:
        """The `namespace/name` of every translated Ingress."""
        ...

    def served_hosts(self) -> Iterable[str]:
        """Every host an Ingress serves."""
        ...


class WasmPluginsHandler:
    """Folds WasmPlugins into the plugin chain and their instances' ECDS resources."""

    kinds = (WASM_PLUGIN,)

    def __init__(self, table: ResourceTable, status: StatusBook, chain: PluginChain) -> None:
        self._table = table
        self._status = status
        self.chain = chain
        # Every object's plan (None: rejected, with its reason), and the objects claiming a plugin
        # identity: two sources may publish the same namespace/name, and filter names must be unique.
        self._plans: dict[ObjectRef, PluginPlan | None] = {}
        self._claims: dict[PluginKey, set[ObjectRef]] = {}
        self._reasons: dict[ObjectRef, str] = {}
        self._published: dict[PluginKey, set[str]] = {}

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Re-read a WasmPlugin; touches the listeners when the chain's filters changed and every
        virtual host when what routes need of the plugins changed."""
        key = _plugin_key(ref)
        stored = state.get(ref)
        self._reasons.pop(ref, None)
        if stored is None:
            self._plans.pop(ref, None)
            claims = self._claims.get(key, set())
            claims.discard(ref)
            if not claims:
                self._claims.pop(key, None)
            self._status.clear(ref)
        else:
            self._claims.setdefault(key, set()).add(ref)
            try:
                self._plans[ref] = plan_plugin(decode_plugin(stored.value()))
            except Exception as exc:
                self._plans[ref] = None
                self._reasons[ref] = rejection_reason(exc) if not isinstance(exc, PluginError) else str(exc)
        winner = self._winner(key)
        plan = self._plans.get(winner) if winner is not None else None
        self._publish(key, plan)
        filters_changed, routing_changed = self.chain.set(key, plan)
        return Touched(listeners=filters_changed, all_hosts=routing_changed)

    def _winner(self, key: PluginKey) -> ObjectRef | None:
        """Of the objects claiming a plugin identity, the first applicable one in ref order."""
        return next((r for r in sorted(self._claims.get(key, ())) if self._plans.get(r) is not None), None)

    def _publish(self, key: PluginKey, plan: PluginPlan | None) -> None:
        names: set[str] = set()
        if plan is not None:
            for instance in plan.instances:
                name = filter_name(plan, instance)
                names.add(name)
                self._table.put(EXTENSION_CONFIG, name, extension_config(plan, instance))
        for stale in sorted(self._published.pop(key, set()) - names):
            self._table.remove(EXTENSION_CONFIG, stale)
        if names:
            self._published[key] = names

    def report(self, targets: RouteTargets, services: ServiceModels) -> None:
        """Set every WasmPlugin's status from what is served now: a rule naming no Ingress, host or
        service is a warning (it may arrive later)."""
        if not self._plans:
            return
        ingresses: Set[str] | None = None
        hosts: list[str] | None = None
        for ref in sorted(self._plans):
            plan = self._plans[ref]
            if plan is None:
                self._status.set(ref, Verdict.REJECTED, f"WasmPlugin {ref.key}: {self._reasons[ref]}")
                continue
            winner = self._winner(_plugin_key(ref))
            if winner != ref:
                self._status.set(
                    ref,
                    Verdict.REJECTED,
                    f"WasmPlugin {ref.key}: already published by source {winner.source if winner else '?'}",
                )
                continue
            warnings = list(plan.warnings)
            for instance in plan.rules:
                match = instance.match
                assert match is not None
                if match.ingresses and ingresses is None:
                    ingresses = targets.ingress_keys()
                for name in match.ingresses:
                    if name not in (ingresses or ()):
                        warnings.append(f"{instance.slot}: Ingress {name} is not served")
                if match.domains and hosts is None:
                    hosts = sorted(targets.served_hosts())
                for domain in match.domains:
                    if not any(domain_matches(domain, host) for host in hosts or ()):
                        warnings.append(f"{instance.slot}: domain {domain} matches no host an Ingress serves")
                for service in match.services:
                    host = service.rpartition(":")[0] if ":" in service else service
                    if services.model(host) is None:
                        warnings.append(f"{instance.slot}: service {service} is not known")
            slots = ", ".join(i.slot for i in plan.instances) or "none"
            self._status.set(
                ref,
                Verdict.ACCEPTED,
                f"WasmPlugin {ref.key}: {len(plan.instances)} filter instance(s) ({slots}), module "
                f"sha256 {plan.sha256}",
                warnings,
            )


def _plugin_key(ref: ObjectRef) -> PluginKey:
    namespace, _, name = ref.key.rpartition("/")
    return (namespace, name)
