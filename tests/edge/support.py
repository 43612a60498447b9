"""Edge test support over NATS and gRPC: a hand-driven ledger, proxies on real gRPC streams."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

from tests.edge.envoy_resources import TYPE_OF, name_of
from tests.edge.proxies import DeltaProxy, SotwProxy
from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, EXTENSION_CONFIG, LISTENER, ROUTE, SECRET
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.ledger.records import changes_message
from xdsbus.ledger.store import store_bodies
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.translate.resource_table import ResourceTable
from xdsbus_dev.harness.processes import eventually
from xdsbus_edge.app import Edge

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

    async def commit(
        self, *, withhold: Iterable[str] = (), digest: str | None = None, legacy_digest: bool = False
    ) -> int:
        """Publish the changes since the last commit as the next version. Bodies whose sha256 is in
        `withhold` are not stored: the record names bodies nobody can fetch. `digest` overrides the
        record's digest. `legacy_digest` writes the record as before digests named their algorithm:
        the `sha256-lines-v1` digest and no `digest_algorithm`."""
        changes = self.table.commit()
        parent = self.publisher.head_version
        self.version += 1
        withheld = set(withhold)
        if not withheld and digest is None and not legacy_digest:
            await self.publisher.publish(
                version=self.version,
                first_seq=parent + 1,
                changes=changes,
                digest=self.table.digest(),
                resource_count=len(self.table),
            )
            return self.version
        await store_bodies(self.bus, (res for _, res in changes.changed if res.sha256 not in withheld))
        if legacy_digest:
            algorithm = ""
            digest = digest or digests.lines_digest(
                (k.type_url, k.name, r.sha256) for k, r in self.table.items()
            )
        else:
            algorithm = digests.CURRENT
        record = ledger_pb2.Version(
            version=self.version,
            parent=parent,
            first_seq=parent + 1,
            last_seq=self.version,
            time_unix_nano=time.time_ns(),
            translator_version="test",
            digest=digest if digest is not None else self.table.digest(),
            digest_algorithm=algorithm,
            scope=self.scope,
            resource_count=len(self.table),
            changes=changes_message(changes),
        )
        ack = await self.bus.js.publish(
            ledger_subject(self.scope), record.SerializeToString(), stream=LEDGER_STREAM
        )
        self.publisher.adopt_head(ack.seq, self.version)
        return self.version


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
    EXTENSION_CONFIG: "/envoy.service.extension.v3.ExtensionConfigDiscoveryService/%sExtensionConfigs",
}


class GrpcLink:
    """A proxy's stream over a real gRPC channel to an edge."""

    def __init__(self, port: int, delta: bool, type_url: str | None) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        verb = "Delta" if delta else "Stream"
        if type_url is None:
            path = ADS_DELTA if delta else ADS_SOTW
        else:
            path = PER_TYPE[type_url] % verb
        req = discovery_pb2.DeltaDiscoveryRequest if delta else discovery_pb2.DiscoveryRequest
        resp = discovery_pb2.DeltaDiscoveryResponse if delta else discovery_pb2.DiscoveryResponse
        self.call = self.channel.stream_stream(
            path, request_serializer=req.SerializeToString, response_deserializer=resp.FromString
        )()

    async def send(self, request: Any) -> None:
        await self.call.write(request)

    async def read(self, timeout: float) -> Any | None:
        response = await asyncio.wait_for(self.call.read(), timeout)
        return None if response is grpc.aio.EOF else response

    async def status(self, timeout: float) -> grpc.StatusCode:
        try:
            while True:
                response = await asyncio.wait_for(self.call.read(), timeout)
                if response is grpc.aio.EOF:
                    break
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return await self.call.code()

    async def close(self) -> None:
        self.call.cancel()
        await self.channel.close()


def grpc_proxy(
    kind: str, port: int, node_id: str = "gw-1", scope: str | None = None, type_url: str | None = None
) -> SotwProxy | DeltaProxy:
    """A SotW or delta proxy (`kind`) on a gRPC stream to the edge at `port`."""
    cls = SotwProxy if kind == "sotw" else DeltaProxy
    return cls(GrpcLink(port, kind == "delta", type_url), node_id, scope, type_url)


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    data = await reader.read()
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body.decode()
