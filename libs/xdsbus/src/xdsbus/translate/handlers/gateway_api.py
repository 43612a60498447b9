"""Gateway API: GatewayClasses, Gateways, HTTPRoutes, GRPCRoutes, ReferenceGrants and Namespaces,
recomputed whole when one of them changes (see gateway_api.build), or a Service or Secret it used."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import LISTENER, ROUTE
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.routes import DownstreamTls, Route, TlsFilterChainModel
from xdsbus.translate import envoy_listeners, envoy_routes
from xdsbus.translate.gateway_api.build import GATEWAY_API_KINDS, GatewayApiOutput, translate_gateway_api
from xdsbus.translate.global_options.model import CurrentOptions
from xdsbus.translate.handlers.route_inputs import RouteInputs
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.shared_listeners import put_http_listener, put_https_listener
from xdsbus.translate.virtual_hosts import Problems, route_needs, serve_virtual_host

# The owner of the Gateway API's shared resources (derived clusters, secrets); never a hostname.
OWNER = "gateway-api/"

_TOUCHED = Touched(gateway_api=True)


@dataclass
class GatewayApiIndex:
    """The last translation, what was serialized from it for the shared ports, and the resources it
    published on its own ports."""

    output: GatewayApiOutput = field(default_factory=GatewayApiOutput)
    # Port → domain → serialized virtual host, for HTTP listeners.
    http_bytes: dict[int, dict[str, bytes]] = field(default_factory=dict)
    # Port → SNI filter chains, for HTTPS listeners.
    chains: dict[int, list[TlsFilterChainModel]] = field(default_factory=dict)
    resources: set[ResourceKey] = field(default_factory=set)


class GatewayApiHandler:
    """Folds the Gateway API kinds by recomputing their translation; the GatewayApiHosts view."""

    kinds = GATEWAY_API_KINDS

    def __init__(self, inputs: RouteInputs, options: CurrentOptions | None = None) -> None:
        self._in = inputs
        self.index = GatewayApiIndex()
        # The global options (higress-config) its own ports' listeners carry.
        self._options = options or CurrentOptions()

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """Any Gateway API object changed: the whole translation is redone by `regenerate`."""
        return _TOUCHED

    # -- what other changes touch ---------------------------------------------------------------

    def uses_service(self, host: str) -> bool:
        """Whether the last translation looked the service `host` up."""
        return host in self.index.output.services

    def uses_secrets(self, names: Iterable[str]) -> bool:
        """Whether the last translation referred to one of these SDS names."""
        return not self.index.output.secrets.isdisjoint(names)

    # -- what the shared listeners read -------------------------------------------------------------

    def http_vhosts(self, port: int) -> Mapping[str, bytes] | None:
        """Per domain, its serialized virtual host on HTTP `port` (None: no Gateway listens there)."""
        return self.index.http_bytes.get(port)

    def http_routes(self, port: int, domain: str) -> list[Route]:
        """The routes of a domain on HTTP `port`."""
        return self.index.output.http[port][domain]

    def tls_chains(self, port: int) -> list[TlsFilterChainModel]:
        """The SNI filter chains on HTTPS `port`, in order."""
        return self.index.chains.get(port, [])

    # -- translation ----------------------------------------------------------------------------

    def regenerate(self, state: FoldState) -> None:
        """Translate every Gateway API object again; publish its own listeners, routes, clusters,
        secrets and statuses (the shared Ingress ports are spliced by SharedListeners)."""
        settings = self._in.settings
        out = translate_gateway_api(
            state,
            self._in.services.model,
            lambda name: self._in.secrets.holds(name, True),
            {settings.http_port: "HTTP", settings.https_port: "HTTPS"},
            settings.addresses,
        )
        index = self.index
        previous = index.output
        index.output = out
        problems: Problems = {}
        resources: set[ResourceKey] = set()
        served: list[Route] = []
        index.http_bytes = {}
        for port, domains in out.http.items():
            serialized: dict[str, bytes] = {}
            for domain, routes in domains.items():
                serialized[domain], kept = serve_virtual_host(
                    f"{domain}:{port}", domain, routes, problems, plugins=self._in.plugins
                )
                served.extend(kept)
            index.http_bytes[port] = serialized
            if port == settings.http_port:
                continue
            listener_name, route_name = put_http_listener(
                self._in.table, port, self._options.value, plugins=self._in.plugins
            )
            config = envoy_routes.assemble_route_config(
                route_name, [serialized[d] for d in sorted(serialized)]
            )
            self._in.table.put(ROUTE, route_name, config)
            resources |= {ResourceKey(LISTENER, listener_name), ResourceKey(ROUTE, route_name)}
        index.chains = {}
        certificates: set[str] = set()
        for port, groups in out.https.items():
            chains: list[TlsFilterChainModel] = []
            for hostname, group in sorted(groups.items()):
                # `/` never appears in a hostname: these names cannot meet an Ingress host's.
                route_name = envoy_listeners.https_route_config_name(port, f"gateway/{hostname or '*'}")
                parts = []
                for domain, routes in sorted(group.vhosts.items()):
                    vhost, kept = serve_virtual_host(
                        f"{domain}:{port}", domain, routes, problems, plugins=self._in.plugins
                    )
                    parts.append(vhost)
                    served.extend(kept)
                self._in.table.put(ROUTE, route_name, envoy_routes.assemble_route_config(route_name, parts))
                resources.add(ResourceKey(ROUTE, route_name))
                certificates.add(group.cert_secret)
                chains.append(
                    TlsFilterChainModel(
                        server_names=(hostname,) if hostname else (),
                        tls=DownstreamTls(cert_secret=group.cert_secret),
                        route_config=route_name,
                    )
                )
            index.chains[port] = chains
            if port == settings.https_port:
                continue
            listener = put_https_listener(
                self._in.table, port, tuple(chains), self._options.value, plugins=self._in.plugins
            )
            resources.add(ResourceKey(LISTENER, listener))
        for key in sorted(index.resources - resources):
            self._in.table.remove(key.type_url, key.name)
        index.resources = resources
        clusters, upstream_secrets = route_needs(
            served, self._in.services.model, self._options.value.upstream
        )
        self._in.derived.set_owned(OWNER, clusters)
        self._in.secrets.set_used(OWNER, certificates | upstream_secrets, out.secrets)
        for ref, status in out.statuses.items():
            extra = problems.get(ref)
            if extra:
                status = msgspec.structs.replace(status, warnings=status.warnings + extra)
            self._in.status.put(ref, status)
        # Only this handler sets statuses of these kinds: the previous translation's are all there is.
        for ref in sorted(previous.statuses.keys() - out.statuses.keys()):
            self._in.status.clear(ref)
