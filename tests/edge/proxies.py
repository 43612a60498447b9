"""A proxy's side of an xDS stream, over whatever carries it (gRPC in support.py, memory in
harness.py): the node on the first request only, requests, ACKs and NACKs, and `quiet` to prove that
nothing else is on its way."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.protobuf import struct_pb2
from google.rpc import status_pb2

# A type no snapshot holds: requests for it are the "barrier" that proves nothing else was answered.
PROBE = "type.googleapis.com/envoy.service.runtime.v3.Runtime"


def node(node_id: str = "gw-1", scope: str | None = None) -> base_pb2.Node:
    n = base_pb2.Node(id=node_id, cluster="test-gateways")
    if scope is not None:
        n.metadata.CopyFrom(struct_pb2.Struct(fields={"XDSBUS_SCOPE": struct_pb2.Value(string_value=scope)}))
    return n


class Link(Protocol):
    """One stream's carrier: requests out, responses in, its end."""

    async def send(self, request: Any) -> None: ...

    async def read(self, timeout: float) -> Any | None:
        """The next response; None once the stream ended."""
        ...

    async def status(self, timeout: float) -> Any:
        """Wait for the stream's end; its status code."""
        ...

    async def close(self) -> None: ...


class _Proxy:
    def __init__(
        self, link: Link, node_id: str = "gw-1", scope: str | None = None, type_url: str | None = None
    ) -> None:
        self.link = link
        self.node = node(node_id, scope)
        self.type_url = type_url
        self.last: dict[str, Any] = {}
        self._sent_node = False
        self._probes = 0

    async def _write(self, request: Any) -> None:
        if not self._sent_node:
            request.node.CopyFrom(self.node)
            self._sent_node = True
        await self.link.send(request)

    async def recv(self, timeout: float = 5.0) -> Any:
        response = await self.link.read(timeout)
        if response is None:
            raise AssertionError("stream ended")
        self.last[response.type_url] = response
        return response

    async def status(self, timeout: float = 5.0) -> Any:
        """Wait until the stream ends; its status code."""
        return await self.link.status(timeout)

    async def close(self) -> None:
        await self.link.close()

    async def _until_probe_answered(self) -> list[Any]:
        before = []
        while True:
            response = await self.recv()
            if response.type_url == PROBE:
                return before
            before.append(response)


class SotwProxy(_Proxy):
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
        return await self._until_probe_answered()


class DeltaProxy(_Proxy):
    """A delta proxy. `request` sends; `quiet` proves no other response is pending."""

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
        """As SotwProxy.quiet: a new probe name is always answered, after everything queued before it."""
        self._probes += 1
        await self.request(PROBE, [f"probe-{self._probes}"])
        return await self._until_probe_answered()
