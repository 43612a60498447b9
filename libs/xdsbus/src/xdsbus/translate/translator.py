"""The incremental translator: folded state in, Envoy resources out.

Each object is translated into the internal model when it changes; Envoy resources are regenerated only
for what the change touches (a Service's clusters and endpoints, the virtual hosts an Ingress contributes
to) and serialized once into the resource table. The output depends only on the folded state: no clock,
no randomness, and every iteration over a collection is in sorted order.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterable

import msgspec

from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.k8s import K8sEndpoints, K8sEndpointSlice, K8sIngress, K8sService, decode_object
from xdsbus.model.routes import ListenerModel, Route, VirtualHostModel
from xdsbus.model.services import Resolution, ServiceModel, cluster_name, k8s_hostname
from xdsbus.translate import envoy_clusters, envoy_routes
from xdsbus.translate.ingress_rules import IngressError, IngressTranslation, translate_ingress
from xdsbus.translate.k8s_services import (
    ServiceError,
    endpoints_from_slices,
    endpoints_from_v1,
    service_model,
    slice_service_name,
)
from xdsbus.translate.resources import CLUSTER, ENDPOINT, LISTENER, ROUTE, ResourceKey, ResourceTable
from xdsbus.translate.route_order import order_routes
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.status import ObjectStatus, Verdict

log = logging.getLogger(__name__)

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
ENDPOINTS = "Endpoints"
INGRESS = "Ingress"


_EXPECTED_ERRORS = (msgspec.ValidationError, ServiceError, IngressError)


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

    def __init__(self, settings: TranslatorSettings | None = None) -> None:
        self.settings = settings or TranslatorSettings()
        self.http_port = self.settings.http_port
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
        self._vhost_bytes: dict[str, bytes] = {}
        # Routes that lost their match to an older object, per virtual host, reported on the loser.
        self._conflicts: dict[str, dict[ObjectRef, list[str]]] = {}

    # -- entry points -------------------------------------------------------------------------

    def full_build(self, state: FoldState) -> None:
        """Translate everything in the state (after a restore or a replay)."""
        refs: list[ObjectRef] = []
        for kind in (SERVICE, ENDPOINT_SLICE, ENDPOINTS, INGRESS):
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
        for ref in refs:
            if ref.kind == SERVICE:
                hosts |= self._fold_service(state, ref)
            elif ref.kind == ENDPOINT_SLICE:
                hosts |= self._fold_slice(state, ref)
            elif ref.kind == ENDPOINTS:
                hosts |= self._fold_v1_endpoints(state, ref)
            elif ref.kind == INGRESS:
                ingresses.add(ref)
        for host in sorted(hosts):
            if self._regenerate_service(state, host):
                ingresses |= self._dependents.get(host, set())
        vhosts: set[str] = set()
        for ref in sorted(ingresses):
            vhosts |= self._fold_ingress(state, ref)
        for host in sorted(vhosts):
            self._regenerate_vhost(host)
        if vhosts or force_gateway:
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
            self._host_candidates[old.model.hostname].discard(ref)
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
            self._host_slices[(ref.source, old_host)].discard(ref)
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
            for host in old.services:
                self._dependents[host].discard(ref)
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
        for host in translation.services:
            self._dependents.setdefault(host, set()).add(ref)
        self._ingress_status(ref)
        return vhosts

    def _ingress_status(self, ref: ObjectRef) -> None:
        translation = self._ingresses.get(ref)
        if translation is None:
            return
        lost = [
            msg
            for host in sorted({hr.host for hr in translation.routes})
            for msg in self._conflicts.get(host, {}).get(ref, [])
        ]
        self._set_status(ref, Verdict.ACCEPTED, warnings=translation.warnings + lost)

    def _regenerate_vhost(self, host: str) -> None:
        members = self._vhost_members.get(host)
        previous = self._conflicts.pop(host, {})
        if not members:
            self._vhost_members.pop(host, None)
            self._vhost_bytes.pop(host, None)
            self._refresh_conflict_status(previous, {})
            return
        routes: list[Route] = []
        for ref in sorted(members):
            routes.extend(hr.route for hr in self._ingresses[ref].routes if hr.host == host)
        ordered, conflicts = order_routes(routes)
        current: dict[ObjectRef, list[str]] = {}
        for c in conflicts:
            loser = ObjectRef(c.loser.kind, c.loser.source, c.loser.key)
            current.setdefault(loser, []).append(
                f"host {host}: {c.match} is already served by {c.winner.kind} {c.winner.key} (older wins)"
            )
        if current:
            self._conflicts[host] = current
        self._refresh_conflict_status(previous, current)
        model = VirtualHostModel(name=f"{host}:{self.http_port}", domains=(host,), routes=tuple(ordered))
        self._vhost_bytes[host] = envoy_routes.build_virtual_host(model).SerializeToString(deterministic=True)

    def _refresh_conflict_status(
        self, before: dict[ObjectRef, list[str]], after: dict[ObjectRef, list[str]]
    ) -> None:
        for ref in sorted(before.keys() | after.keys()):
            if before.get(ref) != after.get(ref):
                self._ingress_status(ref)

    def _regenerate_gateway(self) -> None:
        """The HTTP listener and its route configuration, spliced from the cached virtual hosts."""
        route_name = envoy_routes.http_route_config_name(self.http_port)
        listener = ListenerModel(
            name=envoy_routes.listener_name(self.http_port), port=self.http_port, route_config=route_name
        )
        self.table.put(
            LISTENER,
            listener.name,
            envoy_routes.build_http_listener(listener).SerializeToString(deterministic=True),
        )
        vhosts = self._vhost_bytes
        self.table.put(
            ROUTE,
            route_name,
            envoy_routes.assemble_route_config(route_name, [vhosts[h] for h in sorted(vhosts)]),
        )
