"""Edge test support: a hand-driven ledger, Envoy resources, an xDS client playing the proxy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.ledger.records import changes_message
from xdsbus.ledger.store import store_bodies
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.translate.resource_table import ResourceTable
from xdsbus_dev.harness.processes import eventually
from xdsbus_edge.app import Edge

# A type no snapshot holds: requests for it are the "barrier" that proves nothing else was answered.
PROBE = "type.googleapis.com/envoy.service.runtime.v3.Runtime"

TYPE_OF = {
    cluster_pb2.Cluster: CLUSTER,
    endpoint_pb2.ClusterLoadAssignment: ENDPOINT,
    listener_pb2.Listener: LISTENER,
    route_pb2.RouteConfiguration: ROUTE,
    secret_pb2.Secret: SECRET,
}


# ---- resources ----------------------------------------------------------------------------------


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    c.eds_cluster_config.eds_config.ads.SetInParent()
    c.eds_cluster_config.eds_config.resource_api_version = config_source_pb2.ApiVersion.V3
    return c


def cla(name: str, *ips: str, port: int = 8080) -> endpoint_pb2.ClusterLoadAssignment:
    lb = [
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(
                address=address_pb2.Address(
                    socket_address=address_pb2.SocketAddress(address=ip, port_value=port)
                )
            )
        )
        for ip in ips
    ]
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=lb)]
    )


def listener(name: str, port: int = 8080) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address="0.0.0.0", port_value=port)
        ),
    )


def route(name: str, cluster_name: str, domain: str = "*") -> route_pb2.RouteConfiguration:
    r = route_components_pb2.Route(
        match=route_components_pb2.RouteMatch(prefix="/"),
        route=route_components_pb2.RouteAction(cluster=cluster_name),
    )
    return route_pb2.RouteConfiguration(
        name=name, virtual_hosts=[route_components_pb2.VirtualHost(name="vh", domains=[domain], routes=[r])]
    )


def secret(name: str, key: str = "-----BEGIN PRIVATE KEY-----secret") -> secret_pb2.Secret:
    s = secret_pb2.Secret(name=name)
    s.tls_certificate.CopyFrom(common_pb2.TlsCertificate())
    s.tls_certificate.certificate_chain.inline_string = "-----BEGIN CERTIFICATE-----cert"
    s.tls_certificate.private_key.inline_string = key
    return s


def name_of(message: Any) -> str:
    return message.cluster_name if isinstance(message, endpoint_pb2.ClusterLoadAssignment) else message.name


# ---- the ledger ---------------------------------------------------------------------------------


class LedgerWriter:
    """Publishes versions of one scope like the builder does: bodies first, then the record."""

    def __init__(self, bus: Bus, scope: str = "default", first_version: int = 100) -> None:
        self.bus = bus
        self.scope = scope
        self.table = ResourceTable()
        self.publisher = LedgerPublisher(bus, scope, "test")
        self.version = first_version - 1

    def put(self, *messages: Any) -> LedgerWriter:
        for m in messages:
            self.table.put(TYPE_OF[type(m)], name_of(m), m.SerializeToString(deterministic=True))
        return self

    def remove(self, type_url: str, name: str) -> LedgerWriter:
        self.table.remove(type_url, name)
        return self

    def sha(self, type_url: str, name: str) -> str:
        res = self.table.get(type_url, name)
        assert res is not None
        return res.sha256

    async def commit(self, *, withhold: Iterable[str] = (), digest: str | None = None) -> int:
        """Publish the changes since the last commit as the next version. Bodies whose sha256 is in
        `withhold` are not stored: the record names bodies nobody can fetch. `digest` overrides the
        record's digest."""
        changes = self.table.commit()
        parent = self.publisher.head_version
        self.version += 1
        withheld = set(withhold)
        if not withheld and digest is None:
            await self.publisher.publish(
                version=self.version,
                first_seq=parent + 1,
                changes=changes,
                digest=self.table.digest(),
                resource_count=len(self.table),
            )
            return self.version
        await store_bodies(self.bus, (res for _, res in changes.changed if res.sha256 not in withheld))
        record = ledger_pb2.Version(
            version=self.version,
            parent=parent,
            first_seq=parent + 1,
            last_seq=self.version,
            time_unix_nano=time.time_ns(),
            translator_version="test",
            digest=digest if digest is not None else self.table.digest(),
            scope=self.scope,
            resource_count=len(self.table),
            changes=changes_message(changes),
        )
        ack = await self.bus.js.publish(
            ledger_subject(self.scope), record.SerializeToString(), stream=LEDGER_STREAM
        )
        self.publisher.adopt_head(ack.seq, self.version)
        return self.version


def base_config(w: LedgerWriter) -> LedgerWriter:
    """Two EDS clusters with endpoints, a listener, a route and a secret."""
    return w.put(
        cluster("a"),
        cluster("b"),
        cla("a", "10.0.0.1"),
        cla("b", "10.0.0.2"),
        listener("l1"),
        route("r1", "a"),
        secret("s1"),
    )


async def serving(edge: Edge, version: int, scope: str = "default") -> None:
    """Wait until the edge serves `version` (or later) of `scope`."""

    async def probe() -> bool:
        snap = edge.cache.current(scope)
        return snap is not None and snap.version >= version

    await eventually(probe, timeout=10, what=f"edge serving {scope} v{version}")


# ---- a proxy ------------------------------------------------------------------------------------

ADS_SOTW = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"
ADS_DELTA = "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources"
PER_TYPE = {
    CLUSTER: "/envoy.service.cluster.v3.ClusterDiscoveryService/%sClusters",
    ENDPOINT: "/envoy.service.endpoint.v3.EndpointDiscoveryService/%sEndpoints",
    LISTENER: "/envoy.service.listener.v3.ListenerDiscoveryService/%sListeners",
    ROUTE: "/envoy.service.route.v3.RouteDiscoveryService/%sRoutes",
    SECRET: "/envoy.service.secret.v3.SecretDiscoveryService/%sSecrets",
}


def node(node_id: str = "gw-1", scope: str | None = None) -> base_pb2.Node:
    n = base_pb2.Node(id=node_id, cluster="test-gateways")
    if scope is not None:
        n.metadata.CopyFrom(struct_pb2.Struct(fields={"XDSBUS_SCOPE": struct_pb2.Value(string_value=scope)}))
    return n


class _Client:
    delta = False

    def __init__(
        self, port: int, node_id: str = "gw-1", scope: str | None = None, type_url: str | None = None
    ):
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        self.node = node(node_id, scope)
        self.type_url = type_url
        verb = "Delta" if self.delta else "Stream"
        if type_url is None:
            path = ADS_DELTA if self.delta else ADS_SOTW
        else:
            path = PER_TYPE[type_url] % verb
        req = discovery_pb2.DeltaDiscoveryRequest if self.delta else discovery_pb2.DiscoveryRequest
        resp = discovery_pb2.DeltaDiscoveryResponse if self.delta else discovery_pb2.DiscoveryResponse
        self.call = self.channel.stream_stream(
            path, request_serializer=req.SerializeToString, response_deserializer=resp.FromString
        )()
        self._sent_node = False
        self._probes = 0
        self.last: dict[str, Any] = {}

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()

    async def _write(self, request: Any) -> None:
        if not self._sent_node:
            request.node.CopyFrom(self.node)
            self._sent_node = True
        await self.call.write(request)

    async def recv(self, timeout: float = 5.0) -> Any:
        response = await asyncio.wait_for(self.call.read(), timeout)
        if response is grpc.aio.EOF:
            raise AssertionError("stream ended")
        self.last[response.type_url] = response
        return response

    async def status(self, timeout: float = 5.0) -> grpc.StatusCode:
        """Read until the RPC ends; its status code."""
        try:
            while True:
                response = await asyncio.wait_for(self.call.read(), timeout)
                if response is grpc.aio.EOF:
                    break
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await self.call.code()


class SotwClient(_Client):
    """A SotW proxy. `request` sends; `quiet` proves no other response is pending."""

    async def request(
        self,
        type_url: str | None = None,
        names: Iterable[str] = (),
        *,
        nonce: str = "",
        version: str = "",
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url if type_url is not None else (self.type_url or ""),
            resource_names=list(names),
            response_nonce=nonce,
            version_info=version,
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self._write(req)

    async def ack(self, response: discovery_pb2.DiscoveryResponse, names: Iterable[str] = ()) -> None:
        await self.request(response.type_url, names, nonce=response.nonce, version=response.version_info)

    async def nack(
        self,
        response: discovery_pb2.DiscoveryResponse,
        error: str,
        names: Iterable[str] = (),
        accepted: str = "",
    ) -> None:
        """Reject `response`; `accepted` is the last version the proxy accepted."""
        await self.request(response.type_url, names, nonce=response.nonce, version=accepted, error=error)

    async def quiet(self) -> list[discovery_pb2.DiscoveryResponse]:
        """Send a request that must be answered (a new name of a type nobody serves) and return every
        response that came before its answer: requests are handled in order, so anything the edge meant
        to send earlier is in this list."""
        self._probes += 1
        previous = self.last.get(PROBE)
        await self.request(
            PROBE,
            [f"probe-{i}" for i in range(1, self._probes + 1)],
            nonce=previous.nonce if previous else "",
        )
        before = []
        while True:
            response = await self.recv()
            if response.type_url == PROBE:
                return before
            before.append(response)


class DeltaClient(_Client):
    delta = True

    async def request(
        self,
        type_url: str | None = None,
        subscribe: Iterable[str] = (),
        unsubscribe: Iterable[str] = (),
        *,
        nonce: str = "",
        initial: dict[str, str] | None = None,
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DeltaDiscoveryRequest(
            type_url=type_url if type_url is not None else (self.type_url or ""),
            resource_names_subscribe=list(subscribe),
            resource_names_unsubscribe=list(unsubscribe),
            response_nonce=nonce,
            initial_resource_versions=initial or {},
        )
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self._write(req)

    async def ack(self, response: discovery_pb2.DeltaDiscoveryResponse) -> None:
        await self.request(response.type_url, nonce=response.nonce)

    async def quiet(self) -> list[discovery_pb2.DeltaDiscoveryResponse]:
        self._probes += 1
        await self.request(PROBE, [f"probe-{self._probes}"])
        before = []
        while True:
            response = await self.recv()
            if response.type_url == PROBE:
                return before
            before.append(response)


def names(response: Any) -> list[str]:
    """Resource names in a response (SotW: unpacked; delta: Resource.name)."""
    if isinstance(response, discovery_pb2.DeltaDiscoveryResponse):
        return sorted(r.name for r in response.resources)
    out = []
    for any_ in response.resources:
        for cls in TYPE_OF:
            if any_.type_url.endswith(cls.DESCRIPTOR.full_name):
                m = cls()
                any_.Unpack(m)
                out.append(name_of(m))
    return sorted(out)


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()
