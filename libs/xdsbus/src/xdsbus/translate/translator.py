"""The incremental translator: folded state in, Envoy resources out.

Each kind of object has a handler (`translate/handlers/`) that owns the index of its objects, folds a
changed object into it and says what the change touched; the translator finds the handler of an event's
kind in a table and regenerates what the handlers touched: a hostname's clusters and endpoints, the
Ingresses that read it, the virtual hosts an Ingress contributes to, the Gateway API, the shared
listeners. Each resource is serialized once into the resource table. The output depends only on the
folded state: no clock, no randomness, and every iteration over a collection is in sorted order.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable

from xdsbus.contract.status import ObjectStatus
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.secretbox import SecretBox
from xdsbus.translate.dataplane import HIGRESS
from xdsbus.translate.envoy_listeners import listener_name
from xdsbus.translate.gateway_scopes import GatewayScopes
from xdsbus.translate.global_options.model import CurrentOptions
from xdsbus.translate.handlers.gateway_api import GatewayApiHandler
from xdsbus.translate.handlers.global_options import GlobalOptionsHandler
from xdsbus.translate.handlers.http2rpc import Http2RpcHandler
from xdsbus.translate.handlers.ingress import IngressHandler
from xdsbus.translate.handlers.registries import RegistriesHandler
from xdsbus.translate.handlers.route_inputs import RouteInputs
from xdsbus.translate.handlers.secrets import SecretsHandler
from xdsbus.translate.handlers.services import ServicesHandler
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.touched import KindHandler
from xdsbus.translate.handlers.wasm_plugins import WasmPluginsHandler
from xdsbus.translate.http2rpc import DubboTranscoderPatch
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.route_table_choice import CurrentRouteTables, RouteTableChoice
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.shared_listeners import SharedListeners
from xdsbus.translate.shared_resources import SharedResources
from xdsbus.translate.wasm_plugins.chain import PluginChain

log = logging.getLogger(__name__)


class Translator:
    """Keeps the Envoy resources of one scope in step with the folded state."""

    def __init__(
        self, settings: TranslatorSettings | None = None, *, secret_box: SecretBox | None = None
    ) -> None:
        self.settings = settings or TranslatorSettings()
        self.table = ResourceTable()
        self._status = StatusBook()
        # Policy and fallback clusters, shared by the Ingress hosts and the Gateway API routes using them.
        derived = SharedResources(self.table)
        # The global options (higress-config) every listener and cluster carries.
        self._options = CurrentOptions()
        self._services = ServicesHandler(self.table, self._status, self._options)
        self._global = GlobalOptionsHandler(self.table, self._status, self._services, self._options)
        self._secrets = SecretsHandler(self.table, self._status, secret_box)
        # The wasm plugins' filters, which every listener and virtual host carries.
        plugins = PluginChain()
        self._wasm = WasmPluginsHandler(self.table, self._status, plugins)
        # The form of the HTTP port's route table, which the listeners choose and the Ingress hosts' error
        # pages follow.
        route_tables = CurrentRouteTables(self.settings.http_port, self.settings.route_tables)
        routes = RouteInputs(
            self.table,
            self._status,
            self.settings,
            self._services,
            self._secrets,
            derived,
            plugins,
            route_tables,
        )
        self._ingress = IngressHandler(routes, self._options)
        self._gateway_api = GatewayApiHandler(routes, self._options)
        # Each Gateway's own data plane, its derived scope (docs/design.md §5).
        self.gateway_scopes = GatewayScopes(
            self.table,
            self.settings,
            self._services.model,
            lambda name: self._secrets.holds(name, True),
            plugins,
            self._options,
        )
        http2rpc = Http2RpcHandler(self._status, self.settings.dataplane, self._ingress.dependents)
        self._ingress.rpc = http2rpc.rpc_lookup()
        # Higress's data plane: its transcoder filter before the router of the Ingress ports' listeners.
        ports = (self.settings.http_port, self.settings.https_port)
        self._dubbo = (
            DubboTranscoderPatch(self.table, tuple(listener_name(port) for port in ports))
            if self.settings.dataplane == HIGRESS
            else None
        )
        self._listeners = SharedListeners(
            self.table,
            self.settings,
            self._ingress,
            self._gateway_api,
            self._options,
            plugins=plugins,
            route_tables=route_tables,
        )
        # In the order a full build folds them: what a kind reads is folded before it.
        handlers: list[KindHandler] = [
            self._global,
            self._services,
            RegistriesHandler(self._services, self._status),
            self._secrets,
            http2rpc,
            self._ingress,
            self._gateway_api,
            self._wasm,
        ]
        self._handlers: dict[str, KindHandler] = {}
        for handler in handlers:
            for kind in handler.kinds:
                if kind in self._handlers:
                    raise ValueError(f"kind {kind} has two handlers")
                self._handlers[kind] = handler
        # Kinds that reach the translator but no handler translates (ConfigMap today): logged
        # once each, and left without a status as before.
        self._unhandled: set[str] = set()

    @property
    def kinds(self) -> tuple[str, ...]:
        """The kinds some handler translates, in the order a full build folds them."""
        return tuple(self._handlers)

    @property
    def route_tables(self) -> RouteTableChoice:
        """The form of the HTTP port's route table and why (docs/route-table-split.md)."""
        return self._listeners.route_tables

    @property
    def statuses(self) -> dict[ObjectRef, ObjectStatus]:
        """Every object's current verdict."""
        return self._status.statuses

    # -- entry points -------------------------------------------------------------------------

    def full_build(self, state: FoldState) -> None:
        """Translate everything in the state (after a restore or a replay)."""
        refs = [ref for kind in self.kinds for ref, _ in state.of_kind(kind)]
        # A full build allocates a dozen container objects per resource and frees almost none: the
        # cyclic collector's passes over the folded state find no garbage yet cost ~40% of the build at
        # 10k services (bench builder_full_build). Pause it for the build.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.update(state, refs, force_gateway=True)
        finally:
            if collecting:
                if gc.get_freeze_count() == 0:
                    # What the build made lives as long as the translator: move it to the oldest
                    # generation (frozen, then unfrozen into it), or the first young collections after
                    # the build walk all of it again (~0.1 s of the next commit at 10k services). Not
                    # when something is frozen already: unfreezing would release what a caller froze.
                    gc.freeze()
                    gc.unfreeze()
                gc.enable()

    def update(self, state: FoldState, refs: Iterable[ObjectRef], *, force_gateway: bool = False) -> None:
        """Bring the resources up to date after the objects in `refs` changed in `state`."""
        hosts: set[str] = set()
        secrets: set[str] = set()
        ingresses: set[ObjectRef] = set()
        gateway_api = force_gateway
        all_hosts = False
        # Whether anything a WasmPlugin's status reads may have changed (its own object, the Ingresses,
        # the hosts served, the service models): endpoint churn alone does not recompute them.
        plugin_inputs = False
        handlers = self._handlers
        for ref in refs:
            handler = handlers.get(ref.kind)
            if handler is None:
                self._not_translated(ref.kind)
                continue
            touched = handler.fold(state, ref)
            plugin_inputs = plugin_inputs or handler is self._wasm
            hosts |= touched.hosts
            secrets |= touched.secrets
            ingresses |= touched.ingresses
            gateway_api = gateway_api or touched.gateway_api or touched.listeners or touched.all_hosts
            all_hosts = all_hosts or touched.all_hosts
        options_changed = self._global.take_options_changed()
        if options_changed:
            # Global options apply to every cluster and listener (docs/global-options.md).
            self._services.rebuild_clusters()
            gateway_api = True
        for host in sorted(hosts):
            if self._services.regenerate(host):
                plugin_inputs = True
                ingresses |= self._ingress.dependents(host)
                gateway_api = gateway_api or self._gateway_api.uses_service(host)
        if options_changed or self._global.collector_host in hosts:
            self._global.regenerate_collector()
        if secrets:
            vhosts = self._ingress.hosts_using(secrets)
            gateway_api = gateway_api or self._gateway_api.uses_secrets(secrets)
        else:
            vhosts = set()
        vhosts |= self._ingress.translate(state, ingresses)
        https_changed = self._global.take_https_changed()
        if all_hosts or options_changed or https_changed:
            # Options changed: every host's derived clusters take the new upstream options; higress-https
            # changed: TLS hosts may take or lose a fallback certificate.
            vhosts |= self._ingress.served_hosts()
        self._ingress.regenerate(vhosts)
        if gateway_api:
            self._gateway_api.regenerate(state)
            self.gateway_scopes.regenerate(state, self._gateway_api.index.output)
        if vhosts or gateway_api or options_changed:
            self._listeners.regenerate()
            if self._dubbo is not None:
                self._dubbo.apply()
        if plugin_inputs or ingresses or vhosts or gateway_api:
            self._wasm.report(self._ingress, self._services)

    def take_status_changes(self) -> list[ObjectStatus | ObjectRef]:
        """Statuses that changed since the last call; a bare ObjectRef means the object is gone."""
        return self._status.take_changes()

    def _not_translated(self, kind: str) -> None:
        if kind not in self._unhandled:
            self._unhandled.add(kind)
            log.info("no handler translates kind %s: its objects are folded and not translated", kind)
