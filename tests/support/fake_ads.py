"""A minimal ADS server (SotW and Delta) serving resources a test dictates, for testing the Envoy harness
and checking what a real Envoy accepts or rejects without the edge service. Not a reference
implementation of the protocol: the edge is that."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, TYPE_ORDER
from xdsbus.model.routes import ListenerModel
from xdsbus.translate.envoy_routes import build_http_listener, http_route_config_name, listener_name

WILDCARD_TYPES = (CLUSTER, LISTENER)


def cluster(name: str) -> cluster_pb2.Cluster:
    """An EDS cluster over ADS, as the translator makes them."""
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.CopyFrom(duration_pb2.Duration(seconds=5))
    c.eds_cluster_config.eds_config.CopyFrom(
        config_source_pb2.ConfigSource(ads={}, resource_api_version=config_source_pb2.V3)
    )
    return c


def load_assignment(name: str, *endpoints: tuple[str, int]) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    group = cla.endpoints.add()
    for address, port in endpoints:
        lb = group.lb_endpoints.add()
        lb.endpoint.address.socket_address.address = address
        lb.endpoint.address.socket_address.port_value = port
    return cla


def http_listener(port: int) -> Message:
    return build_http_listener(
        ListenerModel(name=listener_name(port), port=port, route_config=http_route_config_name(port))
    )


def route_config(port: int, routes: list[tuple[str, str, str]]) -> route_pb2.RouteConfiguration:
    """`routes`: (domain, path prefix, cluster) in match order."""
    config = route_pb2.RouteConfiguration(name=http_route_config_name(port))
    hosts: dict[str, route_components_pb2.VirtualHost] = {}
    for domain, prefix, target in routes:
        vhost = hosts.get(domain)
        if vhost is None:
            vhost = config.virtual_hosts.add(name=f"{domain}:{port}", domains=[domain])
            hosts[domain] = vhost
        route = vhost.routes.add()
        route.match.prefix = prefix
        route.route.cluster = target
    return config


def pack(message: Message) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def resource_name(type_url: str, message: Message) -> str:
    if type_url == ENDPOINT:
        return message.cluster_name  # type: ignore[attr-defined,no-any-return]
    return message.name  # type: ignore[attr-defined,no-any-return]


@dataclass
class Nack:
    type_url: str
    version: str
    message: str


@dataclass
class _Snapshot:
    version: int
    resources: dict[str, dict[str, any_pb2.Any]] = field(default_factory=dict)


class FakeAds(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    """Serves one snapshot to every client; `set()` replaces resources of one type and pushes."""

    def __init__(self) -> None:
        self.snapshot = _Snapshot(version=1, resources={t: {} for t in TYPE_ORDER})
        self.nacks: list[Nack] = []
        self.acks: list[tuple[str, str]] = []
        self.pushes: dict[str, int] = dict.fromkeys(TYPE_ORDER, 0)
        self.nodes: list[str] = []
        self._changed = asyncio.Condition()
        self._server: grpc.aio.Server | None = None
        self.port = 0

    async def start(self, port: int = 0) -> FakeAds:
        self._server = grpc.aio.server()
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(self, self._server)
        self.port = self._server.add_insecure_port(f"127.0.0.1:{port}")
        await self._server.start()
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.stop(grace=0)

    async def set(self, *messages: Message, type_url: str, replace: bool = True) -> None:
        """Put resources of one type (all of that type when `replace`) in a new version, and push."""
        async with self._changed:
            current = {} if replace else dict(self.snapshot.resources[type_url])
            for message in messages:
                current[resource_name(type_url, message)] = pack(message)
            self.snapshot = _Snapshot(
                version=self.snapshot.version + 1, resources={**self.snapshot.resources, type_url: current}
            )
            self._changed.notify_all()

    def _version(self) -> str:
        return str(self.snapshot.version)

    # -- SotW --------------------------------------------------------------------------------------

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DiscoveryResponse]:
        nonces = itertools.count(1)
        sent: dict[str, tuple[int, tuple[str, ...]]] = {}  # type -> (snapshot version, names)
        names: dict[str, tuple[str, ...]] = {}
        pending = asyncio.Event()
        pending.set()
        closed = False

        async def read() -> None:
            nonlocal closed
            async for request in request_iterator:
                if request.node.id and request.node.id not in self.nodes:
                    self.nodes.append(request.node.id)
                if request.HasField("error_detail"):
                    self.nacks.append(
                        Nack(request.type_url, request.version_info, request.error_detail.message)
                    )
                    continue
                if request.response_nonce:
                    self.acks.append((request.type_url, request.version_info))
                requested = tuple(sorted(request.resource_names))
                if names.get(request.type_url) != requested or request.type_url not in sent:
                    names[request.type_url] = requested
                    sent.pop(request.type_url, None)
                    pending.set()
            closed = True
            pending.set()

        async def wake_on_change() -> None:
            while True:
                async with self._changed:
                    await self._changed.wait()
                pending.set()

        reader = asyncio.create_task(read())
        waker = asyncio.create_task(wake_on_change())
        try:
            while True:
                await pending.wait()
                pending.clear()
                if closed:
                    return
                snapshot = self.snapshot
                for type_url in TYPE_ORDER:
                    if type_url not in names:
                        continue
                    wanted = names[type_url]
                    if sent.get(type_url, (0, ()))[0] == snapshot.version:
                        continue
                    available = snapshot.resources[type_url]
                    if type_url in WILDCARD_TYPES and (not wanted or "*" in wanted):
                        chosen = list(available.values())
                    else:
                        chosen = [available[n] for n in wanted if n in available]
                    sent[type_url] = (snapshot.version, wanted)
                    self.pushes[type_url] += 1
                    yield discovery_pb2.DiscoveryResponse(
                        version_info=str(snapshot.version),
                        type_url=type_url,
                        nonce=str(next(nonces)),
                        resources=chosen,
                    )
        finally:
            reader.cancel()
            waker.cancel()

    # -- Delta -------------------------------------------------------------------------------------

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[discovery_pb2.DeltaDiscoveryResponse]:
        nonces = itertools.count(1)
        subscribed: dict[str, set[str]] = {}
        known: dict[str, dict[str, str]] = {}  # type -> name -> version the client holds
        pending = asyncio.Event()
        closed = False

        async def read() -> None:
            nonlocal closed
            async for request in request_iterator:
                if request.node.id and request.node.id not in self.nodes:
                    self.nodes.append(request.node.id)
                if request.HasField("error_detail"):
                    self.nacks.append(Nack(request.type_url, "", request.error_detail.message))
                    continue
                if request.response_nonce:
                    self.acks.append((request.type_url, ""))
                    continue
                subs = subscribed.setdefault(request.type_url, set())
                subs.update(request.resource_names_subscribe)
                subs.difference_update(request.resource_names_unsubscribe)
                if not subs and request.type_url in WILDCARD_TYPES:
                    subs.add("*")
                held = known.setdefault(request.type_url, {})
                held.update(request.initial_resource_versions)
                for name in request.resource_names_subscribe:
                    held.pop(name, None)
                pending.set()
            closed = True
            pending.set()

        async def wake_on_change() -> None:
            while True:
                async with self._changed:
                    await self._changed.wait()
                pending.set()

        reader = asyncio.create_task(read())
        waker = asyncio.create_task(wake_on_change())
        try:
            first: set[str] = set()
            while True:
                await pending.wait()
                pending.clear()
                if closed:
                    return
                snapshot = self.snapshot
                for type_url in TYPE_ORDER:
                    if type_url not in subscribed:
                        continue
                    subs = subscribed[type_url]
                    held = known[type_url]
                    available = snapshot.resources[type_url]
                    wanted = set(available) if "*" in subs else subs & set(available)
                    out = []
                    for name in sorted(wanted):
                        version = hashlib.sha256(available[name].value).hexdigest()[:16]
                        if held.get(name) != version:
                            held[name] = version
                            out.append(
                                discovery_pb2.Resource(name=name, version=version, resource=available[name])
                            )
                    removed = [n for n in held if n not in available and ("*" in subs or n in subs)]
                    for name in removed:
                        del held[name]
                    if not out and not removed and type_url in first:
                        continue
                    first.add(type_url)
                    self.pushes[type_url] += 1
                    yield discovery_pb2.DeltaDiscoveryResponse(
                        system_version_info=str(snapshot.version),
                        type_url=type_url,
                        nonce=str(next(nonces)),
                        resources=out,
                        removed_resources=removed,
                    )
        finally:
            reader.cancel()
            waker.cancel()


async def serve_demo(ads: FakeAds, *, listener_port: int, backends: dict[str, tuple[str, int]]) -> None:
    """Clusters `backends` (name -> one endpoint), one listener on `listener_port` routing host
    `<name>.test` to cluster `<name>`."""
    await ads.set(*(cluster(name) for name in backends), type_url=CLUSTER)
    await ads.set(*(load_assignment(name, ep) for name, ep in backends.items()), type_url=ENDPOINT)
    await ads.set(http_listener(listener_port), type_url=LISTENER)
    await ads.set(
        route_config(listener_port, [(f"{name}.test", "/", name) for name in backends]), type_url=ROUTE
    )
