"""The incremental translator: folded state in, Envoy resources out.

Each object is translated into the internal model when it changes; Envoy resources are regenerated only
for what the change touches (a Service's clusters and endpoints, the virtual hosts an Ingress contributes
to) and serialized once into the resource table. The output depends only on the folded state: no clock,
no randomness, and every iteration over a collection is in sorted order.
"""

from __future__ import annotations

import gc
import logging
import re
from collections.abc import Hashable, Iterable
from typing import TypeVar

import msgspec

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.k8s import K8sEndpoints, K8sEndpointSlice, K8sIngress, K8sService, decode_object
from xdsbus.model.mcpbridge import MCPBRIDGE_KEY, MCPBRIDGE_KIND
from xdsbus.model.mcpbridge_registries import winning_source
from xdsbus.model.registry import REGISTRY_SERVICE_KIND
from xdsbus.model.routes import (
    DownstreamTls,
    HeaderMatch,
    HttpsListenerModel,
    ListenerModel,
    Route,
    RouteOrigin,
    StringMatchKind,
    TlsFilterChainModel,
    VirtualHostModel,
)
from xdsbus.model.services import Resolution, ServiceModel, cluster_name, k8s_hostname
from xdsbus.secretbox import SecretBox, SecretKeyError
from xdsbus.translate import envoy_clusters, envoy_listeners, envoy_routes
from xdsbus.translate.canary import apply_canaries
from xdsbus.translate.envoy_destinations import derived_clusters, fallback_chain, route_destinations
from xdsbus.translate.gateway_api.build import GATEWAY_API_KINDS, GatewayApiOutput, translate_gateway_api
from xdsbus.translate.ingress_annotations import CanarySpec
from xdsbus.translate.ingress_rules import (
    WILDCARD_HOST,
    HostRoute,
    HostTls,
    IngressError,
    IngressTranslation,
    http_listener_route,
    translate_ingress,
)
from xdsbus.translate.k8s_secrets import SecretError
from xdsbus.translate.k8s_services import (
    ServiceError,
    endpoints_from_slices,
    endpoints_from_v1,
    service_model,
    slice_service_name,
)
from xdsbus.translate.registry_services import (
    RegistryEndpoints,
    RegistryServiceError,
    bridge_services,
    registry_service,
)
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.route_order import describe_match, order_routes
from xdsbus.translate.secret_index import SecretIndex
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.shared_resources import SharedResources

log = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
ENDPOINTS = "Endpoints"
INGRESS = "Ingress"
SECRET_KIND = "Secret"
REGISTRY_SERVICE = REGISTRY_SERVICE_KIND
MCPBRIDGE = MCPBRIDGE_KIND
# The owner of the Gateway API's shared resources (derived clusters, secrets); never a hostname.
_GATEWAY_API_OWNER = "gateway-api/"
# The kind of the service entries an McpBridge's `dns` and `static` registries make (never an event kind).
BRIDGE_SERVICE = "McpBridge/registry"


_EXPECTED_ERRORS = (
    msgspec.ValidationError,
    ServiceError,
    IngressError,
    SecretError,
    SecretKeyError,
    RegistryServiceError,
)


def _reason(exc: Exception) -> str:
    """The rejection reason for an object. Any failure rejects the object alone (the builder must never
    crash on input); an unexpected one is also logged with its traceback, as a translator bug."""
    if isinstance(exc, _EXPECTED_ERRORS):
        return str(exc)
    log.error("translator error", exc_info=exc)
    return f"internal error: {exc!r}"


class _ServiceEntry(msgspec.Struct, frozen=True):
    ref: ObjectRef
    created: str
    model: ServiceModel


class Translator:
    """Keeps the Envoy resources of one scope in step with the folded state."""

    def __init__(
        self, settings: TranslatorSettings | None = None, *, secret_box: SecretBox | None = None
    ) -> None:
        self.settings = settings or TranslatorSettings()
        self.http_port = self.settings.http_port
        self.https_port = self.settings.https_port
        self.table = ResourceTable()
        self.statuses: dict[ObjectRef, ObjectStatus] = {}
        self._status_changed: set[ObjectRef] = set()
        # Services: per object, and which object owns each hostname (oldest wins).
        self._services: dict[ObjectRef, _ServiceEntry] = {}
        self._host_candidates: dict[str, set[ObjectRef]] = {}
        self._host_model: dict[str, ServiceModel] = {}
        self._host_resources: dict[str, list[ResourceKey]] = {}
        # Endpoints: slices by (source, hostname) of the Service they belong to.
        self._slices: dict[ObjectRef, K8sEndpointSlice] = {}
        self._slice_host: dict[ObjectRef, str] = {}
        self._host_slices: dict[tuple[str, str], set[ObjectRef]] = {}
        self._v1_endpoints: dict[ObjectRef, K8sEndpoints] = {}
        # Ingress: its translation, the virtual hosts it feeds, the services it depends on.
        self._ingresses: dict[ObjectRef, IngressTranslation] = {}
        self._vhost_members: dict[str, set[ObjectRef]] = {}
        self._dependents: dict[str, set[ObjectRef]] = {}
        # Per host, its HTTP virtual host serialized and framed as a RouteConfiguration field.
        self._vhost_bytes: dict[str, bytes] = {}
        # Problems found while assembling a virtual host (lost conflicts, orphan canaries, missing TLS
        # secrets), per host, reported on the object concerned.
        self._conflicts: dict[str, dict[ObjectRef, list[str]]] = {}
        # TLS: the Ingresses declaring TLS per host, and the filter chain each served host gets.
        self._tls_members: dict[str, set[ObjectRef]] = {}
        self._tls_hosts: dict[str, TlsFilterChainModel] = {}
        # The `*` host's HTTP routes: wildcard hosts end with them (see _one_label).
        self._catch_all_routes: list[Route] = []
        self._secrets = SecretIndex(self.table, secret_box)
        # Policy and fallback clusters, shared by the hosts whose routes use them.
        self._derived = SharedResources(self.table)
        # Registries: the EDS endpoints of each RegistryService, and the service entries the McpBridge's
        # dns/static registries make (kind BRIDGE_SERVICE, in `_services` like any other service).
        self._registry_endpoints: dict[ObjectRef, RegistryEndpoints] = {}
        self._bridge_entries: list[ObjectRef] = []
        # Gateway API: recomputed whole when one of its inputs changes (see gateway_api.build). Its
        # virtual hosts per port (serialized), its HTTPS filter chains per port, the resources it owns
        # on its own ports; and the Ingress HTTP routes per host, to merge hosts both serve.
        self._gw = GatewayApiOutput()
        self._gw_dirty = False
        self._gw_http_bytes: dict[int, dict[str, bytes]] = {}
        self._gw_chains: dict[int, list[TlsFilterChainModel]] = {}
        self._gw_resources: set[ResourceKey] = set()
        self._vhost_routes: dict[str, list[Route]] = {}
        # The HTTPS listener's chains as last published, so that it is rebuilt only when they change.
        self._https_chains: tuple[TlsFilterChainModel, ...] = ()

    # -- entry points -------------------------------------------------------------------------

    def full_build(self, state: FoldState) -> None:
        """Translate everything in the state (after a restore or a replay)."""
        refs: list[ObjectRef] = []
        for kind in (SERVICE, ENDPOINT_SLICE, ENDPOINTS, REGISTRY_SERVICE, MCPBRIDGE, SECRET_KIND, INGRESS):
            refs.extend(ref for ref, _ in state.of_kind(kind))
        for kind in GATEWAY_API_KINDS:
            refs.extend(ref for ref, _ in state.of_kind(kind))
        # A full build allocates a dozen container objects per resource and frees almost none: the
        # cyclic collector's passes over the folded state find no garbage yet cost ~40% of the build at
        # 10k services (bench builder_full_build). Pause it for the build.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self.update(state, refs, force_gateway=True)
        finally:
            if collecting:
                gc.enable()

    def update(self, state: FoldState, refs: Iterable[ObjectRef], *, force_gateway: bool = False) -> None:
        """Bring the resources up to date after the objects in `refs` changed in `state`."""
        hosts: set[str] = set()
        ingresses: set[ObjectRef] = set()
        vhosts: set[str] = set()
        for ref in refs:
            if ref.kind == SERVICE:
                hosts |= self._fold_service(state, ref)
            elif ref.kind == ENDPOINT_SLICE:
                hosts |= self._fold_slice(state, ref)
            elif ref.kind == ENDPOINTS:
                hosts |= self._fold_v1_endpoints(state, ref)
            elif ref.kind == INGRESS:
                ingresses.add(ref)
            elif ref.kind == SECRET_KIND:
                vhosts |= self._fold_secret(state, ref)
            elif ref.kind == REGISTRY_SERVICE:
                hosts |= self._fold_registry_service(state, ref)
            elif ref.kind == MCPBRIDGE:
                hosts |= self._fold_mcpbridge(state, ref)
            elif ref.kind in GATEWAY_API_KINDS:
                self._gw_dirty = True
        for host in sorted(hosts):
            if self._regenerate_service(state, host):
                ingresses |= self._dependents.get(host, set())
                if host in self._gw.services:
                    self._gw_dirty = True
        for ref in sorted(ingresses):
            vhosts |= self._fold_ingress(state, ref)
        if WILDCARD_HOST in vhosts:
            # Wildcard hosts end with the `*` rules (see _one_label); sorted, `*` is rebuilt first.
            vhosts |= {host for host in self._vhost_members if _is_wildcard(host)}
        for host in sorted(vhosts):
            self._regenerate_vhost(host)
        gateway_api = self._gw_dirty or force_gateway
        if gateway_api:
            self._regenerate_gateway_api(state)
        if vhosts or gateway_api:
            self._regenerate_gateway()

    def take_status_changes(self) -> list[ObjectStatus | ObjectRef]:
        """Statuses that changed since the last call; a bare ObjectRef means the object is gone."""
        out: list[ObjectStatus | ObjectRef] = []
        for ref in sorted(self._status_changed):
            out.append(self.statuses.get(ref, ref))
        self._status_changed.clear()
        return out

    # -- status -------------------------------------------------------------------------------

    def _set_status(
        self, ref: ObjectRef, state: Verdict, reason: str = "", warnings: list[str] | None = None
    ) -> None:
        status = ObjectStatus(
            kind=ref.kind, source=ref.source, key=ref.key, state=state, reason=reason, warnings=warnings or []
        )
        if self.statuses.get(ref) != status:
            self.statuses[ref] = status
            self._status_changed.add(ref)

    def _clear_status(self, ref: ObjectRef) -> None:
        if self.statuses.pop(ref, None) is not None:
            self._status_changed.add(ref)

    # -- services and endpoints ---------------------------------------------------------------

    def _fold_service(self, state: FoldState, ref: ObjectRef) -> set[str]:
        hosts: set[str] = set()
        old = self._services.pop(ref, None)
        if old is not None:
            hosts.add(old.model.hostname)
            _discard(self._host_candidates, old.model.hostname, ref)
        stored = state.get(ref)
        if stored is None:
            self._clear_status(ref)
            return hosts
        try:
            svc = decode_object(stored.body, K8sService)
            model = service_model(svc)
        except Exception as exc:
            self._set_status(ref, Verdict.REJECTED, f"Service {ref.key}: {_reason(exc)}")
            return hosts
        self._services[ref] = _ServiceEntry(ref=ref, created=svc.metadata.creation_timestamp, model=model)
        self._host_candidates.setdefault(model.hostname, set()).add(ref)
        hosts.add(model.hostname)
        self._set_status(ref, Verdict.ACCEPTED)
        return hosts

    def _fold_slice(self, state: FoldState, ref: ObjectRef) -> set[str]:
        hosts: set[str] = set()
        old_host = self._slice_host.pop(ref, None)
        self._slices.pop(ref, None)
        if old_host is not None:
            hosts.add(old_host)
            _discard(self._host_slices, (ref.source, old_host), ref)
        stored = state.get(ref)
        if stored is None:
            self._clear_status(ref)
            return hosts
        try:
            slice_ = decode_object(stored.body, K8sEndpointSlice)
        except Exception as exc:
            self._set_status(ref, Verdict.REJECTED, f"EndpointSlice {ref.key}: {_reason(exc)}")
            return hosts
        service = slice_service_name(slice_)
        if not service:
            self._set_status(
                ref, Verdict.REJECTED, f"EndpointSlice {ref.key}: no kubernetes.io/service-name label"
            )
            return hosts
        host = k8s_hostname(service, slice_.metadata.namespace)
        self._slices[ref] = slice_
        self._slice_host[ref] = host
        self._host_slices.setdefault((ref.source, host), set()).add(ref)
        hosts.add(host)
        self._set_status(ref, Verdict.ACCEPTED)
        return hosts

    def _fold_v1_endpoints(self, state: FoldState, ref: ObjectRef) -> set[str]:
        self._v1_endpoints.pop(ref, None)
        stored = state.get(ref)
        namespace, _, name = ref.key.rpartition("/")
        host = k8s_hostname(name, namespace or "default")
        if stored is None:
            self._clear_status(ref)
            return {host}
        try:
            self._v1_endpoints[ref] = decode_object(stored.body, K8sEndpoints)
        except Exception as exc:
            self._set_status(ref, Verdict.REJECTED, f"Endpoints {ref.key}: {_reason(exc)}")
            return {host}
        self._set_status(ref, Verdict.ACCEPTED)
        return {host}

    def _owner(self, host: str) -> _ServiceEntry | None:
        candidates = self._host_candidates.get(host)
        if not candidates:
            return None
        entries = [self._services[ref] for ref in candidates]
        return min(entries, key=lambda e: (e.created, e.ref))

    def _regenerate_service(self, state: FoldState, host: str) -> bool:
        """Rebuild the clusters and endpoints of one hostname; True when its model changed."""
        owner = self._owner(host)
        old_model = self._host_model.get(host)
        new_keys: list[ResourceKey] = []
        if owner is None:
            self._host_model.pop(host, None)
        else:
            model = owner.model
            self._host_model[host] = model
            slices = [self._slices[r] for r in sorted(self._host_slices.get((owner.ref.source, host), ()))]
            v1 = self._v1_endpoints.get(ObjectRef(ENDPOINTS, owner.ref.source, owner.ref.key))
            for port in model.ports:
                name = cluster_name(port.number, host)
                if model != old_model:
                    cluster = envoy_clusters.build_cluster(model, port)
                    self.table.put(CLUSTER, name, cluster.SerializeToString(deterministic=True))
                new_keys.append(ResourceKey(CLUSTER, name))
                if model.resolution is not Resolution.EDS:
                    continue
                endpoints = endpoints_from_slices(port, slices) if slices else []
                if not slices and v1 is not None:
                    endpoints = endpoints_from_v1(port, v1)
                if owner.ref.kind == REGISTRY_SERVICE:
                    endpoints = list(self._registry_endpoints.get(owner.ref, ()))
                cla = envoy_clusters.build_load_assignment(name, endpoints)
                self.table.put(ENDPOINT, name, cla.SerializeToString(deterministic=True))
                new_keys.append(ResourceKey(ENDPOINT, name))
        for key in self._host_resources.get(host, ()):
            if key not in new_keys:
                self.table.remove(key.type_url, key.name)
        if new_keys:
            self._host_resources[host] = new_keys
        else:
            self._host_resources.pop(host, None)
        return self._host_model.get(host) != old_model

    # -- registries (RegistryService events, McpBridge dns/static) ----------------------------

    def _fold_registry_service(self, state: FoldState, ref: ObjectRef) -> set[str]:
        """Re-read a RegistryService (key: its hostname); returns the hostnames to regenerate."""
        hosts: set[str] = set()
        old = self._services.pop(ref, None)
        self._registry_endpoints.pop(ref, None)
        if old is not None:
            hosts.add(old.model.hostname)
            _discard(self._host_candidates, old.model.hostname, ref)
        stored = state.get(ref)
        if stored is None:
            self._clear_status(ref)
            return hosts
        try:
            translation = registry_service(ref.key, stored.body)
        except Exception as exc:
            self._set_status(ref, Verdict.REJECTED, f"RegistryService {ref.key}: {_reason(exc)}")
            return hosts
        model = translation.model
        # No creation time: a registry hostname never names a Kubernetes Service; between registries
        # claiming one hostname the first source by name wins (ObjectRef order).
        self._services[ref] = _ServiceEntry(ref=ref, created="", model=model)
        self._registry_endpoints[ref] = translation.endpoints
        self._host_candidates.setdefault(model.hostname, set()).add(ref)
        hosts.add(model.hostname)
        self._set_status(ref, Verdict.ACCEPTED, warnings=translation.warnings)
        return hosts

    def _fold_mcpbridge(self, state: FoldState, ref: ObjectRef) -> set[str]:
        """Re-read the McpBridge: only `higress-system/default` counts, and of the sources holding one
        the first by name (as the registry watchers decide). Its dns/static registries become services;
        returns the hostnames to regenerate."""
        if ref.key != MCPBRIDGE_KEY:
            if state.get(ref) is None:
                self._clear_status(ref)
            else:
                self._set_status(
                    ref, Verdict.REJECTED, f"McpBridge {ref.key}: ignored, only {MCPBRIDGE_KEY} is used"
                )
            return set()
        hosts: set[str] = set()
        for old in self._bridge_entries:
            entry = self._services.pop(old)
            hosts.add(entry.model.hostname)
            _discard(self._host_candidates, entry.model.hostname, old)
        self._bridge_entries = []
        if state.get(ref) is None:
            self._clear_status(ref)
        bridges = state.objects.get(MCPBRIDGE, {})
        holders = [source for source, objects in bridges.items() if MCPBRIDGE_KEY in objects]
        # The first source by name, as the registry watchers decide.
        winner = winning_source(holders)
        for source in sorted(holders):
            if source != winner:
                self._set_status(
                    ObjectRef(MCPBRIDGE, source, MCPBRIDGE_KEY),
                    Verdict.REJECTED,
                    f"McpBridge {MCPBRIDGE_KEY}: source {winner} also has one and is used (first by name)",
                )
        if winner is None:
            return hosts
        bridge_ref = ObjectRef(MCPBRIDGE, winner, MCPBRIDGE_KEY)
        stored = state.get(bridge_ref)
        assert stored is not None
        try:
            translation = bridge_services(stored.body)
        except Exception as exc:
            self._set_status(bridge_ref, Verdict.REJECTED, f"McpBridge {MCPBRIDGE_KEY}: {_reason(exc)}")
            return hosts
        for model in translation.services:
            entry_ref = ObjectRef(BRIDGE_SERVICE, winner, model.hostname)
            self._services[entry_ref] = _ServiceEntry(ref=entry_ref, created="", model=model)
            self._host_candidates.setdefault(model.hostname, set()).add(entry_ref)
            self._bridge_entries.append(entry_ref)
            hosts.add(model.hostname)
        self._set_status(bridge_ref, Verdict.ACCEPTED, warnings=translation.warnings)
        return hosts

    # -- secrets ------------------------------------------------------------------------------

    def _fold_secret(self, state: FoldState, ref: ObjectRef) -> set[str]:
        """Re-read a Secret; returns the virtual hosts whose TLS may have changed.

        A Secret that cannot be used is rejected and provides nothing: what a previous version provided
        is withdrawn too, since a full build (replay, restart) never sees that version."""
        names, error = self._secrets.fold(state, ref)
        if names & self._gw.secrets:
            self._gw_dirty = True
        if error is not None:
            self._set_status(ref, Verdict.REJECTED, f"Secret {ref.key}: {_reason(error)}")
        elif state.get(ref) is None:
            self._clear_status(ref)
        else:
            self._set_status(ref, Verdict.ACCEPTED)
        return self._secrets.users(names) & self._tls_members.keys()

    # -- ingress ------------------------------------------------------------------------------

    def _lookup(self, host: str) -> ServiceModel | None:
        return self._host_model.get(host)

    def _fold_ingress(self, state: FoldState, ref: ObjectRef) -> set[str]:
        vhosts: set[str] = set()
        old = self._ingresses.pop(ref, None)
        if old is not None:
            for hr in old.routes:
                vhosts.add(hr.host)
                self._vhost_members[hr.host].discard(ref)
            for tls in old.tls:
                vhosts.add(tls.host)
                self._tls_members[tls.host].discard(ref)
            for host in old.services:
                _discard(self._dependents, host, ref)
        stored = state.get(ref)
        if stored is None:
            self._clear_status(ref)
            return vhosts
        try:
            ingress = decode_object(stored.body, K8sIngress)
            translation = translate_ingress(ingress, ref.source, ref.key, self._lookup)
        except Exception as exc:
            self._set_status(ref, Verdict.REJECTED, f"Ingress {ref.key}: {_reason(exc)}")
            return vhosts
        self._ingresses[ref] = translation
        for hr in translation.routes:
            vhosts.add(hr.host)
            self._vhost_members.setdefault(hr.host, set()).add(ref)
        for tls in translation.tls:
            vhosts.add(tls.host)
            self._tls_members.setdefault(tls.host, set()).add(ref)
        for host in translation.services:
            self._dependents.setdefault(host, set()).add(ref)
        self._ingress_status(ref)
        return vhosts

    def _ingress_status(self, ref: ObjectRef) -> None:
        translation = self._ingresses.get(ref)
        if translation is None:
            return
        hosts = sorted({hr.host for hr in translation.routes} | {t.host for t in translation.tls})
        lost = [msg for host in hosts for msg in self._conflicts.get(host, {}).get(ref, [])]
        self._set_status(ref, Verdict.ACCEPTED, warnings=translation.warnings + lost)

    def _host_tls(self, host: str, problems: dict[ObjectRef, list[str]]) -> tuple[HostTls | None, list[str]]:
        """The TLS settings a host is served with (the oldest Ingress's, when its secrets exist), and
        the SDS names they need: watched even while missing, so their arrival rebuilds the host."""
        candidates = sorted(
            (
                tls
                for ref in self._tls_members.get(host, ())
                for tls in self._ingresses[ref].tls
                if tls.host == host
            ),
            key=lambda tls: tls.origin,
        )
        if not candidates:
            return None, []
        chosen = candidates[0]
        for other in candidates[1:]:
            if other.origin != chosen.origin:
                problems.setdefault(_origin_ref(other.origin), []).append(
                    f"host {host}: TLS is already configured by {chosen.origin.kind} {chosen.origin.key} "
                    "(older wins)"
                )
        needed = [name for name in (chosen.tls.cert_secret, chosen.tls.client_ca_secret) if name]
        missing = [
            name
            for name, want_certificate in (
                (chosen.tls.cert_secret, True),
                (chosen.tls.client_ca_secret, False),
            )
            if name and not self._secret_holds(name, want_certificate)
        ]
        if missing:
            problems.setdefault(_origin_ref(chosen.origin), []).append(
                f"host {host}: TLS secret {', '.join(missing)} not found or not usable; "
                "the host is served over plain HTTP only"
            )
            return None, needed
        return chosen, needed

    def _secret_holds(self, name: str, certificate: bool) -> bool:
        """Whether an SDS name is provided, as a certificate with its key or as a CA bundle."""
        model = self._secrets.get(name)
        if model is None:
            return False
        return model.certificate is not None if certificate else bool(model.trusted_ca)

    def _ordered_routes(
        self,
        host: str,
        host_routes: list[HostRoute],
        http_listener: bool,
        has_tls: bool,
        problems: dict[ObjectRef, list[str]],
    ) -> list[Route]:
        """One listener's routes of a host: ordered, deduplicated, canaries merged."""
        normal: list[Route] = []
        defaults: list[Route] = []
        canaries: list[tuple[Route, CanarySpec]] = []
        for hr in host_routes:
            route = http_listener_route(hr, has_tls) if http_listener else hr.route
            if hr.canary is not None:
                canaries.append((route, hr.canary))
            elif hr.default_backend:
                defaults.append(route)
            else:
                normal.append(route)
        ordered, conflicts = order_routes(normal, default_backends=defaults)
        merged = apply_canaries(ordered, canaries)
        for c in conflicts:
            problems.setdefault(_origin_ref(c.loser), []).append(
                f"host {host}: {c.match} is already served by {c.winner.kind} {c.winner.key} (older wins)"
            )
        for route, _ in merged.orphans:
            problems.setdefault(_origin_ref(route.origin), []).append(
                f"host {host}: canary has no matching non-canary route for {describe_match(route)}"
            )
        return merged.routes

    def _regenerate_vhost(self, host: str) -> None:
        """Rebuild one host: its HTTP virtual host, its HTTPS route configuration, and the derived
        clusters and secrets they use."""
        previous = self._conflicts.pop(host, {})
        problems: dict[ObjectRef, list[str]] = {}
        host_routes = [
            hr
            for ref in sorted(self._vhost_members.get(host, ()))
            for hr in self._ingresses[ref].routes
            if hr.host == host
        ]
        tls, tls_secrets = self._host_tls(host, problems) if host != WILDCARD_HOST else (None, [])
        listeners: list[list[Route]] = []
        if host_routes:
            http_routes = self._ordered_routes(host, host_routes, True, tls is not None, problems)
            if _is_wildcard(host):
                # Names deeper than one label are not this host's: they fall through to the `*` rules.
                http_routes = [_one_label(route, host) for route in http_routes] + self._catch_all_routes
            vhost, http_routes = self._virtual_host(f"{host}:{self.http_port}", host, http_routes, problems)
            self._vhost_bytes[host] = envoy_routes.frame_virtual_host(vhost)
            self._vhost_routes[host] = http_routes
            listeners.append(http_routes)
        else:
            self._vhost_bytes.pop(host, None)
            self._vhost_routes.pop(host, None)
            self._vhost_members.pop(host, None)
        if host == WILDCARD_HOST:
            self._catch_all_routes = listeners[0] if listeners else []
        https_name = envoy_listeners.https_route_config_name(self.https_port, host)
        if tls is not None:
            https_routes = self._ordered_routes(host, host_routes, False, True, {})
            if _is_wildcard(host):
                https_routes = [_one_label(route, host) for route in https_routes]
            vhost, https_routes = self._virtual_host(f"{host}:{self.https_port}", host, https_routes, {})
            self.table.put(ROUTE, https_name, envoy_routes.assemble_route_config(https_name, [vhost]))
            self._tls_hosts[host] = TlsFilterChainModel(
                server_names=(host,), tls=tls.tls, route_config=https_name
            )
            listeners.append(https_routes)
        else:
            self.table.remove(ROUTE, https_name)
            self._tls_hosts.pop(host, None)
        if not self._tls_members.get(host):
            self._tls_members.pop(host, None)
        # A host served over TLS references its secrets (published); a host still missing one only
        # waits for them (not published), so their arrival rebuilds it.
        if tls is not None:
            self._set_derived(host, listeners, tls_secrets, [])
        else:
            self._set_derived(host, listeners, [], tls_secrets)
        if problems:
            self._conflicts[host] = problems
        self._refresh_conflict_status(previous, problems)

    def _virtual_host(
        self, name: str, host: str, routes: list[Route], problems: dict[ObjectRef, list[str]]
    ) -> tuple[bytes, list[Route]]:
        """A serialized virtual host and the routes it serves.

        A route the generator cannot build (a value out of Envoy's range that a parser let through, a
        translator bug) is left out and reported on the object it came from: it must not stop the
        translation of everything else, nor every restart after it."""
        try:
            return _serialize_vhost(name, host, routes), routes
        except Exception:
            pass
        kept: list[Route] = []
        for index, route in enumerate(routes):
            try:
                envoy_routes.build_route(route, index)
            except Exception as exc:
                problems.setdefault(_origin_ref(route.origin), []).append(
                    f"host {host}: {describe_match(route)} is not served: {_reason(exc)}"
                )
            else:
                kept.append(route)
        try:
            return _serialize_vhost(name, host, kept), kept
        except Exception as exc:
            for route in kept:
                problems.setdefault(_origin_ref(route.origin), []).append(
                    f"host {host}: {describe_match(route)} is not served: {_reason(exc)}"
                )
            return _serialize_vhost(name, host, []), []

    def _set_derived(
        self, host: str, listeners: list[list[Route]], tls_secrets: list[str], waiting: list[str]
    ) -> None:
        """The policy and fallback clusters and the secrets a host's routes need; `waiting`: secrets
        the host needs before it can be served over TLS."""
        clusters, secrets = self._route_needs(route for routes in listeners for route in routes)
        self._derived.set_owned(host, clusters)
        self._secrets.set_used(host, secrets | set(tls_secrets), waiting)

    def _route_needs(self, routes: Iterable[Route]) -> tuple[dict[ResourceKey, bytes], set[str]]:
        """The derived (policy and fallback) clusters `routes` send to, serialized, and the SDS names
        of the upstream TLS they use."""
        clusters: dict[ResourceKey, bytes] = {}
        secrets: set[str] = set()
        for route in routes:
            for dest in route_destinations(route):
                for name, cluster in derived_clusters(dest, self._lookup):
                    clusters[ResourceKey(CLUSTER, name)] = cluster.SerializeToString(deterministic=True)
                for hop in fallback_chain(dest):
                    if hop.policy.tls is not None:
                        secrets.update(
                            n for n in (hop.policy.tls.client_secret, hop.policy.tls.ca_secret) if n
                        )
        return clusters, secrets

    def _refresh_conflict_status(
        self, before: dict[ObjectRef, list[str]], after: dict[ObjectRef, list[str]]
    ) -> None:
        for ref in sorted(before.keys() | after.keys()):
            if before.get(ref) != after.get(ref):
                self._ingress_status(ref)

    # -- Gateway API --------------------------------------------------------------------------

    def _merged_vhosts(self, gateway_vhosts: dict[str, bytes]) -> list[bytes]:
        """The framed virtual hosts of the Ingress HTTP port with the Gateway API's on the same port.

        A host both serve becomes one virtual host (Envoy refuses a domain twice in one route
        configuration): the Ingress routes first, in their own order, then the Gateway API routes in the
        spec's precedence. Ingress behaviour is unchanged; a Gateway route of such a host only gets the
        requests no Ingress route of the host matches."""
        vhosts = self._vhost_bytes
        out: list[bytes] = []
        for host in sorted(vhosts.keys() | gateway_vhosts.keys()):
            if host not in gateway_vhosts:
                out.append(vhosts[host])
            elif host not in vhosts:
                out.append(envoy_routes.frame_virtual_host(gateway_vhosts[host]))
            else:
                routes = self._vhost_routes.get(host, []) + self._gw.http[self.http_port][host]
                merged, _ = self._virtual_host(f"{host}:{self.http_port}", host, routes, {})
                out.append(envoy_routes.frame_virtual_host(merged))
        return out

    def _regenerate_gateway_api(self, state: FoldState) -> None:
        """Translate every Gateway API object again; publish its own listeners, routes, clusters,
        secrets and statuses (the shared Ingress ports are spliced by _regenerate_gateway)."""
        self._gw_dirty = False
        out = translate_gateway_api(
            state,
            self._lookup,
            lambda name: self._secret_holds(name, True),
            {self.http_port: "HTTP", self.https_port: "HTTPS"},
            self.settings.addresses,
        )
        self._gw = out
        problems: dict[ObjectRef, list[str]] = {}
        resources: set[ResourceKey] = set()
        served: list[Route] = []
        self._gw_http_bytes = {}
        for port, domains in out.http.items():
            serialized: dict[str, bytes] = {}
            for domain, routes in domains.items():
                serialized[domain], kept = self._virtual_host(f"{domain}:{port}", domain, routes, problems)
                served.extend(kept)
            self._gw_http_bytes[port] = serialized
            if port == self.http_port:
                continue
            listener_name, route_name = self._put_http_listener(port)
            config = envoy_routes.assemble_route_config(
                route_name, [serialized[d] for d in sorted(serialized)]
            )
            self.table.put(ROUTE, route_name, config)
            resources |= {ResourceKey(LISTENER, listener_name), ResourceKey(ROUTE, route_name)}
        self._gw_chains = {}
        certificates: set[str] = set()
        for port, groups in out.https.items():
            chains: list[TlsFilterChainModel] = []
            for hostname, group in sorted(groups.items()):
                # `/` never appears in a hostname: these names cannot meet an Ingress host's.
                route_name = envoy_listeners.https_route_config_name(port, f"gateway/{hostname or '*'}")
                parts = []
                for domain, routes in sorted(group.vhosts.items()):
                    vhost, kept = self._virtual_host(f"{domain}:{port}", domain, routes, problems)
                    parts.append(vhost)
                    served.extend(kept)
                self.table.put(ROUTE, route_name, envoy_routes.assemble_route_config(route_name, parts))
                resources.add(ResourceKey(ROUTE, route_name))
                certificates.add(group.cert_secret)
                chains.append(
                    TlsFilterChainModel(
                        server_names=(hostname,) if hostname else (),
                        tls=DownstreamTls(cert_secret=group.cert_secret),
                        route_config=route_name,
                    )
                )
            self._gw_chains[port] = chains
            if port == self.https_port:
                continue
            resources.add(ResourceKey(LISTENER, self._put_https_listener(port, tuple(chains))))
        for key in sorted(self._gw_resources - resources):
            self.table.remove(key.type_url, key.name)
        self._gw_resources = resources
        clusters, upstream_secrets = self._route_needs(served)
        self._derived.set_owned(_GATEWAY_API_OWNER, clusters)
        self._secrets.set_used(_GATEWAY_API_OWNER, certificates | upstream_secrets, out.secrets)
        for ref, status in out.statuses.items():
            extra = problems.get(ref)
            if extra:
                status = msgspec.structs.replace(status, warnings=status.warnings + extra)
            if self.statuses.get(ref) != status:
                self.statuses[ref] = status
                self._status_changed.add(ref)
        for ref in sorted(r for r in self.statuses if r.kind in GATEWAY_API_KINDS and r not in out.statuses):
            self._clear_status(ref)

    def _regenerate_gateway(self) -> None:
        """The listeners and the HTTP route configuration, spliced from the cached virtual hosts."""
        _, route_name = self._put_http_listener(self.http_port)
        vhosts = self._vhost_bytes
        gateway_vhosts = self._gw_http_bytes.get(self.http_port)
        parts = self._merged_vhosts(gateway_vhosts) if gateway_vhosts else [vhosts[h] for h in sorted(vhosts)]
        self.table.put(ROUTE, route_name, envoy_routes.assemble_framed_route_config(route_name, parts))
        chains = tuple(self._tls_hosts[h] for h in sorted(self._tls_hosts)) + tuple(
            self._gw_chains.get(self.https_port, [])
        )
        if not chains:
            self.table.remove(LISTENER, envoy_listeners.listener_name(self.https_port))
        elif chains != self._https_chains:
            # Most changes touch no TLS host: building one filter chain per TLS host on each of them
            # would cost more than the rest of the commit when there are thousands.
            self._put_https_listener(self.https_port, chains)
        self._https_chains = chains

    def _put_http_listener(self, port: int) -> tuple[str, str]:
        """Publish the HTTP listener of `port`; returns its name and its route configuration's."""
        route_name = envoy_routes.http_route_config_name(port)
        listener = ListenerModel(name=envoy_routes.listener_name(port), port=port, route_config=route_name)
        self.table.put(
            LISTENER,
            listener.name,
            envoy_routes.build_http_listener(listener).SerializeToString(deterministic=True),
        )
        return listener.name, route_name

    def _put_https_listener(self, port: int, chains: tuple[TlsFilterChainModel, ...]) -> str:
        """Publish the HTTPS listener of `port` with its SNI filter chains; returns its name."""
        name = envoy_listeners.listener_name(port)
        model = HttpsListenerModel(name=name, port=port, chains=chains)
        self.table.put(
            LISTENER, name, envoy_listeners.build_https_listener(model).SerializeToString(deterministic=True)
        )
        return name


def _serialize_vhost(name: str, host: str, routes: list[Route]) -> bytes:
    model = VirtualHostModel(name=name, domains=(host,), routes=tuple(routes))
    return envoy_routes.build_virtual_host(model).SerializeToString(deterministic=True)


def _is_wildcard(host: str) -> bool:
    return host.startswith("*.")


def _one_label(route: Route, host: str) -> Route:
    """`route` restricted to names exactly one label under the wildcard `host`: Envoy matches the domain
    `*.example.com` as a suffix, Kubernetes means one label (`a.example.com`, not `a.b.example.com`)."""
    authority = HeaderMatch(
        name=":authority", kind=StringMatchKind.REGEX, value=f"(?i)[^.]+{re.escape(host[1:])}(:[0-9]+)?"
    )
    return msgspec.structs.replace(route, headers=(authority, *route.headers))


def _origin_ref(origin: RouteOrigin) -> ObjectRef:
    return ObjectRef(origin.kind, origin.source, origin.key)


def _discard(index: dict[K, set[ObjectRef]], key: K, ref: ObjectRef) -> None:
    """Remove `ref` from `index[key]`, and the key with its last member: hostnames come and go, and the
    builder runs for months."""
    members = index.get(key)
    if members is None:
        return
    members.discard(ref)
    if not members:
        del index[key]
