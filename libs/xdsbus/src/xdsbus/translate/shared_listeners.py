"""The listeners of the Ingress ports, which Gateways on those ports share: the HTTP listener with its
route configuration spliced from cached virtual hosts, and the HTTPS listener with one SNI chain per host."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from xdsbus.contract.type_urls import LISTENER, ROUTE
from xdsbus.model.routes import HttpsListenerModel, ListenerModel, Route, TlsFilterChainModel
from xdsbus.translate import envoy_listeners, envoy_routes
from xdsbus.translate.global_options.model import DEFAULT_OPTIONS, CurrentOptions, GlobalOptions
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.route_table_choice import CurrentRouteTables, RouteTableChoice, choose
from xdsbus.translate.route_table_split import SplitRouteTables
from xdsbus.translate.route_tables import error_page_headers
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.virtual_hosts import serve_virtual_host
from xdsbus.translate.wasm_plugins.chain import PluginChain


class IngressHosts(Protocol):
    """What the Ingress handler built for the Ingress ports."""

    def http_vhosts(self) -> Mapping[str, bytes]:
        """Per host, its framed HTTP virtual host."""
        ...

    def http_routes(self, host: str) -> list[Route]:
        """The HTTP routes a host serves."""
        ...

    def tls_chains(self) -> tuple[TlsFilterChainModel, ...]:
        """The SNI filter chains of the hosts served over TLS, in order."""
        ...

    def regenerate_error_pages(self) -> None:
        """Rebuild the hosts with error pages (the table key on their re-issued requests follows whether
        the table is split)."""
        ...


class GatewayApiHosts(Protocol):
    """What the Gateway API handler built for a port."""

    def http_vhosts(self, port: int) -> Mapping[str, bytes] | None:
        """Per domain, its serialized virtual host on HTTP `port` (None: no Gateway listens there)."""
        ...

    def http_routes(self, port: int, domain: str) -> list[Route]:
        """The routes of a domain on HTTP `port`."""
        ...

    def tls_chains(self, port: int) -> list[TlsFilterChainModel]:
        """The SNI filter chains on HTTPS `port`, in order."""
        ...


def put_http_listener(
    table: ResourceTable,
    port: int,
    options: GlobalOptions = DEFAULT_OPTIONS,
    *,
    plugins: PluginChain,
    route_tables: int = 0,
) -> tuple[str, str]:
    """Publish the HTTP listener of `port` with the wasm plugins' filters, reading its route configuration
    split in `route_tables` tables when that is set; returns its name and its route configuration's."""
    route_name = envoy_routes.http_route_config_name(port)
    listener = ListenerModel(
        name=envoy_routes.listener_name(port), port=port, route_config=route_name, route_tables=route_tables
    )
    table.put(
        LISTENER,
        listener.name,
        envoy_routes.build_http_listener(listener, options, plugins=plugins.http_filters()).SerializeToString(
            deterministic=True
        ),
    )
    return listener.name, route_name


def put_https_listener(
    table: ResourceTable,
    port: int,
    chains: tuple[TlsFilterChainModel, ...],
    options: GlobalOptions = DEFAULT_OPTIONS,
    *,
    plugins: PluginChain,
) -> str:
    """Publish the HTTPS listener of `port` with its SNI filter chains and the wasm plugins' filters;
    returns its name."""
    name = envoy_listeners.listener_name(port)
    model = HttpsListenerModel(name=name, port=port, chains=chains)
    listener = envoy_listeners.build_https_listener(model, options, plugins=plugins.http_filters())
    table.put(LISTENER, name, listener.SerializeToString(deterministic=True))
    return name


class SharedListeners:
    """The Ingress ports' listeners, rebuilt from what the Ingress and Gateway API handlers cached."""

    def __init__(
        self,
        table: ResourceTable,
        settings: TranslatorSettings,
        ingress: IngressHosts,
        gateway_api: GatewayApiHosts,
        options: CurrentOptions | None = None,
        *,
        plugins: PluginChain,
        route_tables: CurrentRouteTables,
    ) -> None:
        self._table = table
        self._options = options or CurrentOptions()
        self._plugins = plugins
        self._http_port = settings.http_port
        self._https_port = settings.https_port
        self._ingress = ingress
        self._gateway_api = gateway_api
        self._setting = settings.route_tables
        self._tables = route_tables
        initial = self._tables.value
        self._split = SplitRouteTables(table, self._http_port, initial.tables) if initial.split else None
        # The HTTPS listener's chains and options as last published, so that it is rebuilt only when they
        # change.
        self._https_chains: tuple[TlsFilterChainModel, ...] = ()
        self._https_options = DEFAULT_OPTIONS
        self._https_plugins = plugins.http_filters()

    def regenerate(self) -> None:
        """The listeners and the HTTP route configuration (or its tables, when split), spliced from the
        cached virtual hosts."""
        options = self._options.value
        gateway_vhosts = self._gateway_api.http_vhosts(self._http_port)
        hosts = self._ingress.http_vhosts().keys()
        self._choose(len(hosts | gateway_vhosts.keys()) if gateway_vhosts else len(hosts))
        _, route_name = put_http_listener(
            self._table,
            self._http_port,
            options,
            plugins=self._plugins,
            route_tables=self._tables.value.tables,
        )
        vhosts = self._ingress.http_vhosts()
        merged = self._merged_vhosts(gateway_vhosts) if gateway_vhosts else vhosts
        if self._split is not None:
            self._split.publish(merged)
        else:
            parts = [merged[h] for h in sorted(merged)]
            self._table.put(ROUTE, route_name, envoy_routes.assemble_framed_route_config(route_name, parts))
        chains = self._ingress.tls_chains() + tuple(self._gateway_api.tls_chains(self._https_port))
        if not chains:
            self._table.remove(LISTENER, envoy_listeners.listener_name(self._https_port))
        elif (
            chains != self._https_chains
            or options != self._https_options
            or self._plugins.http_filters() is not self._https_plugins
        ):
            # Most changes touch no TLS host: building one filter chain per TLS host on each of them
            # would cost more than the rest of the commit when there are thousands.
            put_https_listener(self._table, self._https_port, chains, options, plugins=self._plugins)
        self._https_chains = chains
        self._https_options = options
        self._https_plugins = self._plugins.http_filters()

    @property
    def route_tables(self) -> RouteTableChoice:
        """The form of the HTTP port's route table and why (docs/route-table-split.md)."""
        return self._tables.value

    def _choose(self, hosts: int) -> None:
        """Take the form `hosts` virtual hosts call for; on a change, withdraw what the old form
        published and, when split or not changes, rebuild the hosts whose error pages depend on it."""
        before = self._tables.value
        after = choose(self._http_port, self._setting, hosts)
        self._tables.value = after
        if after.tables == before.tables:
            return
        if self._split is not None:
            self._split.withdraw()
        else:
            self._table.remove(ROUTE, envoy_routes.http_route_config_name(self._http_port))
        self._split = SplitRouteTables(self._table, self._http_port, after.tables) if after.split else None
        if after.split != before.split:
            self._ingress.regenerate_error_pages()

    def _merged_vhosts(self, gateway_vhosts: Mapping[str, bytes]) -> dict[str, bytes]:
        """The framed virtual hosts of the Ingress HTTP port with the Gateway API's on the same port, by host.

        A host both serve becomes one virtual host (Envoy refuses a domain twice in one route
        configuration): the Ingress routes first, in their own order, then the Gateway API routes in the
        spec's precedence. Ingress behaviour is unchanged; a Gateway route of such a host only gets the
        requests no Ingress route of the host matches."""
        vhosts = self._ingress.http_vhosts()
        port = self._http_port
        out: dict[str, bytes] = {}
        for host in sorted(vhosts.keys() | gateway_vhosts.keys()):
            if host not in gateway_vhosts:
                out[host] = vhosts[host]
            elif host not in vhosts:
                out[host] = envoy_routes.frame_virtual_host(gateway_vhosts[host])
            else:
                routes = self._ingress.http_routes(host) + self._gateway_api.http_routes(port, host)
                merged, _ = serve_virtual_host(
                    f"{host}:{port}",
                    host,
                    routes,
                    {},
                    plugins=self._plugins,
                    error_page_headers=error_page_headers(self._tables.value.tables),
                )
                out[host] = envoy_routes.frame_virtual_host(merged)
        return out
