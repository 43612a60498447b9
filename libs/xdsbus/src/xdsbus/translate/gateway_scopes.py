"""Per-Gateway data planes (docs/design.md §5 and §6): each Gateway's derived scope
`gateway.<namespace>.<name>`, from the same fold as the shared scope.

A derived scope holds the Gateway's own listeners and route configurations on its own ports, translated
as if it were the only Gateway (`translate_gateway_api(only=...)`: no other Gateway's listeners shadow
or share its ports, no Ingress host joins them), the policy and fallback clusters its routes use, and
everything those name, taken from the shared scope's table with the same bytes and digests: service
clusters, their endpoints, TLS secrets and the wasm filters' extension configurations. Listener and
route names are the shared ones (`0.0.0.0_80`, `http.80`), so a dashboard reads the same stats.

A Gateway that goes away (deleted, or its class no longer accepted) takes its scope out of `scopes()`;
the builder then stops publishing it and keeps its last version (docs/architecture.md, "Per-Gateway
scopes"). Of two sources holding a Gateway of the same namespace and name, the first by source name
has the scope.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsbus.contract.resources import Resource, ResourceKey
from xdsbus.contract.scopes import gateway_scope_of
from xdsbus.contract.type_urls import ROUTE
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.gateway_api import GATEWAY_KIND
from xdsbus.model.routes import DownstreamTls, Route, TlsFilterChainModel
from xdsbus.model.services import ServiceModel
from xdsbus.translate import envoy_listeners, envoy_routes
from xdsbus.translate.gateway_api.build import GatewayApiOutput, translate_gateway_api
from xdsbus.translate.global_options.model import CurrentOptions, GlobalOptions
from xdsbus.translate.resource_refs import ReferenceReader
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.shared_listeners import put_http_listener, put_https_listener
from xdsbus.translate.virtual_hosts import route_needs, serve_virtual_host
from xdsbus.translate.wasm_plugins.chain import PluginChain


def own_resources(
    out: GatewayApiOutput,
    lookup: Callable[[str], ServiceModel | None],
    plugins: PluginChain,
    options: GlobalOptions,
) -> ResourceTable:
    """One Gateway's listeners (with the global options and the wasm plugins' filters), route
    configurations and derived clusters, from its own translation."""
    table = ResourceTable()
    served: list[Route] = []
    for port, domains in sorted(out.http.items()):
        _, route_name = put_http_listener(table, port, options, plugins=plugins)
        parts = []
        for domain, routes in sorted(domains.items()):
            vhost, kept = serve_virtual_host(f"{domain}:{port}", domain, routes, {}, plugins=plugins)
            parts.append(vhost)
            served.extend(kept)
        table.put(ROUTE, route_name, envoy_routes.assemble_route_config(route_name, parts))
    for port, groups in sorted(out.https.items()):
        chains: list[TlsFilterChainModel] = []
        for hostname, group in sorted(groups.items()):
            route_name = envoy_listeners.https_route_config_name(port, f"gateway/{hostname or '*'}")
            parts = []
            for domain, routes in sorted(group.vhosts.items()):
                vhost, kept = serve_virtual_host(f"{domain}:{port}", domain, routes, {}, plugins=plugins)
                parts.append(vhost)
                served.extend(kept)
            table.put(ROUTE, route_name, envoy_routes.assemble_route_config(route_name, parts))
            chains.append(
                TlsFilterChainModel(
                    server_names=(hostname,) if hostname else (),
                    tls=DownstreamTls(cert_secret=group.cert_secret),
                    route_config=route_name,
                )
            )
        put_https_listener(table, port, tuple(chains), options, plugins=plugins)
    clusters, _ = route_needs(served, lookup)
    for key in sorted(clusters):
        table.put(key.type_url, key.name, clusters[key])
    return table


class GatewayScopes:
    """The derived scope of every Gateway: its own resources, and a table per scope kept equal to them
    plus what they name in the shared table (`refresh`)."""

    def __init__(
        self,
        shared: ResourceTable,
        settings: TranslatorSettings,
        lookup: Callable[[str], ServiceModel | None],
        secret_ok: Callable[[str], bool],
        plugins: PluginChain,
        options: CurrentOptions,
    ) -> None:
        self._shared = shared
        self._options = options
        self._settings = settings
        self._lookup = lookup
        self._secret_ok = secret_ok
        self._plugins = plugins
        self._own: dict[str, ResourceTable] = {}
        self._gateways: dict[str, ObjectRef] = {}
        self._tables: dict[str, ResourceTable] = {}
        self._refs = ReferenceReader()

    def scopes(self) -> tuple[str, ...]:
        """The derived scopes, sorted."""
        return tuple(sorted(self._tables))

    def gateway(self, scope: str) -> ObjectRef:
        """The Gateway a derived scope serves."""
        return self._gateways[scope]

    def table(self, scope: str) -> ResourceTable:
        """A derived scope's resources (as of the last `refresh`). The same object while the scope
        lives: a scope that goes and comes back gets a new table."""
        return self._tables[scope]

    def regenerate(self, state: FoldState, shared: GatewayApiOutput) -> None:
        """Translate each Gateway of the shared translation alone (after the Gateway API changed)."""
        settings = self._settings
        reserved = {settings.http_port: "HTTP", settings.https_port: "HTTPS"}
        gateways: dict[str, ObjectRef] = {}
        # Gateways the shared translation owns carry Gateway API conditions; one that did not decode has
        # none and no data plane.
        for ref in sorted(shared.statuses):
            scope = gateway_scope_of(ref.key) if ref.kind == GATEWAY_KIND else None
            if scope is not None and shared.statuses[ref].conditions:
                gateways.setdefault(scope, ref)
        own: dict[str, ResourceTable] = {}
        for scope, ref in sorted(gateways.items()):
            out = translate_gateway_api(
                state, self._lookup, self._secret_ok, reserved, settings.addresses, only=ref
            )
            own[scope] = own_resources(out, self._lookup, self._plugins, self._options.value)
        self._own, self._gateways = own, gateways
        # A table is kept while its scope lives, empty or not (an empty table is falsy: no `or` here).
        kept = self._tables
        self._tables = {scope: kept[scope] if scope in kept else ResourceTable() for scope in sorted(own)}

    def refresh(self) -> None:
        """Bring every derived scope's table to its own resources plus what they name, transitively, in
        the shared table (whose content may have changed without the Gateway API changing)."""
        for scope, table in self._tables.items():
            own = self._own[scope]
            wanted: dict[ResourceKey, Resource] = {}
            pending = [key for key, _ in own.items()]
            while pending:
                key = pending.pop()
                if key in wanted:
                    continue
                resource = own.get(key.type_url, key.name) or self._shared.get(key.type_url, key.name)
                if resource is None:
                    # Named but not built (a Service that does not exist): as in the shared scope.
                    continue
                wanted[key] = resource
                pending.extend(ref for ref in self._refs.refs(key, resource) if ref not in wanted)
            for key, _ in list(table.items()):
                if key not in wanted:
                    table.remove(key.type_url, key.name)
            for key in sorted(wanted):
                table.copy(key, wanted[key])
