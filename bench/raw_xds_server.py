"""The baseline of edge_fanout_1000: a raw grpc.aio server with no xdsbus code.

    python -m bench.raw_xds_server --port 18001 --cds cds.bin --eds eds.bin
        [--tls-cert edge.crt --tls-key edge.key --client-ca ca.crt]

It serves StreamAggregatedResources with identity serializers. It answers a stream's first CDS request
with the bytes of `--cds` and its first EDS request with the bytes of `--eds` (pre-serialized
DiscoveryResponses), and reads (parses) and ignores every other request, as an ACK. A unary
`/bench.RawFanout/Push` whose request is a serialized DiscoveryResponse puts those bytes on the queue of
every open stream; each stream's handler writes them with `context.write`. That is the least any
grpc.aio server does to send the same bytes to every stream on a trigger. With `--tls-cert`, `--tls-key`
and `--client-ca` it serves mTLS (client certificates required), as the edge does in
edge_reconnect_storm, whose baseline it also is.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.discovery.v3 import discovery_pb2

CDS = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
EDS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
SERVER_OPTIONS = [
    ("grpc.max_send_message_length", -1),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
]


def _identity(data: bytes) -> bytes:
    return data


class RawFanout:
    def __init__(self, cds: bytes, eds: bytes) -> None:
        self.initial = {CDS: cds, EDS: eds}
        self.queues: set[asyncio.Queue[bytes]] = set()

    async def stream(self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> None:
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        answered: set[str] = set()

        async def read() -> None:
            async for data in requests:
                request = discovery_pb2.DiscoveryRequest.FromString(data)
                if request.type_url not in answered and request.type_url in self.initial:
                    answered.add(request.type_url)
                    queue.put_nowait(self.initial[request.type_url])

        reader = asyncio.create_task(read())
        self.queues.add(queue)
        try:
            while True:
                await context.write(await queue.get())
        finally:
            self.queues.discard(queue)
            reader.cancel()

    async def push(self, data: bytes, context: Any) -> bytes:
        for queue in self.queues:
            queue.put_nowait(data)
        return str(len(self.queues)).encode()


async def serve(port: int, cds: bytes, eds: bytes, tls: grpc.ServerCredentials | None = None) -> int:
    fan = RawFanout(cds, eds)
    server = grpc.aio.server(options=SERVER_OPTIONS)
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "envoy.service.discovery.v3.AggregatedDiscoveryService",
                {
                    "StreamAggregatedResources": grpc.stream_stream_rpc_method_handler(
                        fan.stream, request_deserializer=_identity, response_serializer=_identity
                    )
                },
            ),
            grpc.method_handlers_generic_handler(
                "bench.RawFanout",
                {
                    "Push": grpc.unary_unary_rpc_method_handler(
                        fan.push, request_deserializer=_identity, response_serializer=_identity
                    )
                },
            ),
        ]
    )
    if tls is None:
        server.add_insecure_port(f"127.0.0.1:{port}")
    else:
        server.add_secure_port(f"127.0.0.1:{port}", tls)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--cds", required=True, help="file holding the CDS DiscoveryResponse")
    p.add_argument("--eds", required=True, help="file holding the EDS DiscoveryResponse")
    p.add_argument("--tls-cert", help="server certificate (PEM): serve mTLS")
    p.add_argument("--tls-key", help="its private key (PEM)")
    p.add_argument("--client-ca", help="CA (PEM) client certificates must chain to")
    args = p.parse_args(argv)
    with open(args.cds, "rb") as f:
        cds = f.read()
    with open(args.eds, "rb") as f:
        eds = f.read()
    tls = None
    if args.tls_cert:
        with open(args.tls_cert, "rb") as c, open(args.tls_key, "rb") as k, open(args.client_ca, "rb") as ca:
            tls = grpc.ssl_server_credentials(
                [(k.read(), c.read())], root_certificates=ca.read(), require_client_auth=True
            )
    return asyncio.run(serve(args.port, cds, eds, tls))


if __name__ == "__main__":
    raise SystemExit(main())
