"""Services and their endpoints: Kubernetes Services, EndpointSlices and Endpoints, and the hostname
claims other handlers add (registries); each hostname's clusters and ClusterLoadAssignments."""

from __future__ import annotations

from dataclasses import dataclass, field

from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.k8s import K8sEndpoints, K8sEndpointSlice, K8sService, decode_object
from xdsbus.model.services import Resolution, ServiceModel, cluster_name, k8s_hostname
from xdsbus.translate import envoy_clusters
from xdsbus.translate.global_options.model import CurrentOptions
from xdsbus.translate.handlers.host_folds import HostFolds
from xdsbus.translate.handlers.index_sets import SetIndex
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.views import ServiceClaim
from xdsbus.translate.k8s_services import (
    ServicePorts,
    SliceEndpoints,
    SlicePorts,
    endpoints_from_slices,
    endpoints_from_v1,
    service_model,
    slice_endpoints,
    slice_service_name,
)
from xdsbus.translate.rejections import rejection_reason
from xdsbus.translate.resource_table import ResourceTable

SERVICE = "Service"
ENDPOINT_SLICE = "EndpointSlice"
ENDPOINTS = "Endpoints"


@dataclass
class ServiceIndex:
    """Claims by object and by hostname, the model each hostname is served with, and endpoints."""

    claims: dict[ObjectRef, ServiceClaim] = field(default_factory=dict)
    candidates: SetIndex[str, ObjectRef] = field(default_factory=SetIndex)
    # The clusters and ClusterLoadAssignments published for a hostname follow from its model
    # (`_resource_keys`): nothing per hostname remembers them (~15 bytes per endpoint at 100k, bench
    # builder_memory).
    models: dict[str, ServiceModel] = field(default_factory=dict)
    # Slices by (source, hostname) of the Service they belong to: only a Service of their own source uses
    # them.
    slices: dict[ObjectRef, SliceEndpoints] = field(default_factory=dict)
    host_slices: SetIndex[tuple[str, str], ObjectRef] = field(default_factory=SetIndex)
    v1_endpoints: dict[ObjectRef, K8sEndpoints] = field(default_factory=dict)


class ServicesHandler(HostFolds):
    """Folds Services, EndpointSlices and Endpoints; rebuilds a hostname's clusters and endpoints."""

    def __init__(
        self, table: ResourceTable, status: StatusBook, options: CurrentOptions | None = None
    ) -> None:
        self._table = table
        self._status = status
        # The global options (higress-config `upstream`) every cluster is built with.
        self._options = options or CurrentOptions()
        self.index = ServiceIndex()
        # The port lists the Services and the slices share (see `service_model`, `slice_endpoints`).
        self._service_ports: ServicePorts = {}
        self._slice_ports: SlicePorts = {}
        self._folds = {
            SERVICE: self._fold_service,
            ENDPOINT_SLICE: self._fold_slice,
            ENDPOINTS: self._fold_v1_endpoints,
        }

    # -- the ServiceClaims and ServiceModels views -------------------------------------------

    def claim(self, claim: ServiceClaim) -> str:
        """Add a claim on a hostname; returns the hostname."""
        host = claim.model.hostname
        self.index.claims[claim.ref] = claim
        self.index.candidates.add(host, claim.ref)
        return host

    def release(self, ref: ObjectRef) -> str | None:
        """Withdraw `ref`'s claim; returns the hostname it claimed."""
        old = self.index.claims.pop(ref, None)
        if old is None:
            return None
        self.index.candidates.discard(old.model.hostname, ref)
        return old.model.hostname

    def model(self, host: str) -> ServiceModel | None:
        """The model `host` is served with (its oldest claim's)."""
        return self.index.models.get(host)

    # -- folding ------------------------------------------------------------------------------

    def _fold_service(self, state: FoldState, ref: ObjectRef) -> set[str]:
        hosts: set[str] = set()
        old_host = self.release(ref)
        if old_host is not None:
            hosts.add(old_host)
        stored = state.get(ref)
        if stored is None:
            self._status.clear(ref)
            return hosts
        try:
            svc = decode_object(stored.body, K8sService)
            model = service_model(svc, self._service_ports)
        except Exception as exc:
            self._status.set(ref, Verdict.REJECTED, f"Service {ref.key}: {rejection_reason(exc)}")
            return hosts
        hosts.add(self.claim(ServiceClaim(ref=ref, created=svc.metadata.creation_timestamp, model=model)))
        self._status.set(ref, Verdict.ACCEPTED)
        return hosts

    def _fold_slice(self, state: FoldState, ref: ObjectRef) -> set[str]:
        index = self.index
        hosts: set[str] = set()
        old = index.slices.pop(ref, None)
        if old is not None:
            hosts.add(old.host)
            index.host_slices.discard((ref.source, old.host), ref)
        stored = state.get(ref)
        if stored is None:
            self._status.clear(ref)
            return hosts
        try:
            slice_ = decode_object(stored.body, K8sEndpointSlice)
        except Exception as exc:
            self._status.set(ref, Verdict.REJECTED, f"EndpointSlice {ref.key}: {rejection_reason(exc)}")
            return hosts
        service = slice_service_name(slice_)
        if not service:
            self._status.set(
                ref, Verdict.REJECTED, f"EndpointSlice {ref.key}: no kubernetes.io/service-name label"
            )
            return hosts
        host = k8s_hostname(service, slice_.metadata.namespace)
        index.slices[ref] = slice_endpoints(slice_, host, self._slice_ports)
        index.host_slices.add((ref.source, host), ref)
        hosts.add(host)
        self._status.set(ref, Verdict.ACCEPTED)
        return hosts

    def _fold_v1_endpoints(self, state: FoldState, ref: ObjectRef) -> set[str]:
        self.index.v1_endpoints.pop(ref, None)
        stored = state.get(ref)
        namespace, _, name = ref.key.rpartition("/")
        host = k8s_hostname(name, namespace or "default")
        if stored is None:
            self._status.clear(ref)
            return {host}
        try:
            self.index.v1_endpoints[ref] = decode_object(stored.body, K8sEndpoints)
        except Exception as exc:
            self._status.set(ref, Verdict.REJECTED, f"Endpoints {ref.key}: {rejection_reason(exc)}")
            return {host}
        self._status.set(ref, Verdict.ACCEPTED)
        return {host}

    # -- regeneration -------------------------------------------------------------------------

    def _owner(self, host: str) -> ServiceClaim | None:
        candidates = self.index.candidates.members(host)
        if not candidates:
            return None
        claims = [self.index.claims[ref] for ref in candidates]
        return min(claims, key=lambda c: (c.created, c.ref))

    def regenerate(self, host: str) -> bool:
        """Rebuild the clusters and endpoints of one hostname; True when its model changed."""
        index = self.index
        owner = self._owner(host)
        old_model = index.models.get(host)
        if owner is None:
            index.models.pop(host, None)
        else:
            model = owner.model
            index.models[host] = model
            slices = [index.slices[r] for r in sorted(index.host_slices.members((owner.ref.source, host)))]
            v1 = index.v1_endpoints.get(ObjectRef(ENDPOINTS, owner.ref.source, owner.ref.key))
            for port in model.ports:
                name = cluster_name(port.number, host)
                if model != old_model:
                    cluster = envoy_clusters.cluster_bytes(model, port, self._options.value.upstream)
                    self._table.put(CLUSTER, name, cluster)
                if model.resolution is not Resolution.EDS:
                    continue
                if owner.endpoints is not None:
                    endpoints = list(owner.endpoints)
                elif slices:
                    endpoints = endpoints_from_slices(port, slices)
                elif v1 is not None:
                    endpoints = endpoints_from_v1(port, v1)
                else:
                    endpoints = []
                cla = envoy_clusters.build_load_assignment(name, endpoints)
                self._table.put(ENDPOINT, name, cla.SerializeToString(deterministic=True))
        new_model = index.models.get(host)
        if old_model is not None and old_model != new_model:
            for key in sorted(_resource_keys(host, old_model) - _resource_keys(host, new_model)):
                self._table.remove(key.type_url, key.name)
        return new_model != old_model

    def rebuild_clusters(self) -> None:
        """Rebuild every hostname's clusters, after the upstream options changed."""
        upstream = self._options.value.upstream
        for host in sorted(self.index.models):
            model = self.index.models[host]
            for port in model.ports:
                cluster = envoy_clusters.cluster_bytes(model, port, upstream)
                self._table.put(CLUSTER, cluster_name(port.number, model.hostname), cluster)


def _resource_keys(host: str, model: ServiceModel | None) -> set[ResourceKey]:
    """The clusters and ClusterLoadAssignments `regenerate` publishes for `host` served with `model`:
    a cluster per port, and its assignment when the endpoints go over EDS."""
    keys: set[ResourceKey] = set()
    for port in model.ports if model is not None else ():
        name = cluster_name(port.number, host)
        keys.add(ResourceKey(CLUSTER, name))
        if model is not None and model.resolution is Resolution.EDS:
            keys.add(ResourceKey(ENDPOINT, name))
    return keys
