"""A protocol-faithful fake Nacos 2.x server for tests: grpc.aio and aiohttp.web in the test's event loop.

The wire protocol follows docs/registries.md §1.2–1.5 (what nacos-sdk-python 3.x sends and
expects; the server side from alibaba/nacos' gRPC acceptors and naming handlers), so the real client library
and our watcher talk to it unchanged:

* gRPC on ``http_port + 1000`` (the client's default ``port_offset``), services ``Request/request`` (unary)
  and ``BiRequestStream/requestBiStream`` registered by hand: the proto has no ``package``. Payloads reuse the
  SDK's compiled ``nacos_grpc_service_pb2`` (compiling our own copy of the package-less proto clashes with it
  in one process: ``duplicate symbol 'Metadata'``). ``Payload.body`` is an ``Any`` with only ``value`` set,
  holding the JSON of the request or response; ``Metadata.type`` is the Java simple class name.
* Handshake: ``ServerCheckRequest`` is answered before any connection exists (``connectionId`` =
  ``<millis>_<ip>_<port>`` as in Java); the connection is registered when ``ConnectionSetupRequest``
  arrives on the bi-stream, and then the server pushes ``SetupAckRequest`` (ability negotiation). Unary
  calls are tied to the stream by ``context.peer()``, which grpc.aio reports identically for both (one
  HTTP/2 connection). A request from an unregistered connection gets ``ErrorResponse`` errorCode 301, as
  the real server answers.
* Naming: ``ServiceListRequest`` (exact group, names without the group prefix, paged from 1, ``count`` =
  total), ``SubscribeServiceRequest`` (answers the current ServiceInfo, records the subscriber),
  ``ServiceQueryRequest`` (cluster and healthyOnly filters), ``InstanceRequest`` register/deregister
  (ephemeral instances belong to the connection and vanish when it closes, as in Nacos 2), and pushes:
  ``NotifySubscriberRequest`` on the stream to every subscribed connection on each change; the client's
  ``NotifySubscriberResponse`` acks are recorded. ``HealthCheckRequest`` is answered.
* ServiceInfo JSON as Nacos' Jackson writes it: null fields are omitted (a ``"message": null`` breaks the
  Python client), ``name`` bare and ``hosts[].serviceName`` grouped, only enabled instances, and
  ``lastRefTime`` strictly increasing across everything the server generates (``max(prev + 1, now_ms)``; the
  client drops a push whose lastRefTime is not newer than its cache). Health protection applies only to a
  service given a threshold (``set_protect_threshold``), because Nacos has no ServiceMetadata, and hence no
  protection, for services that were only created implicitly by registering instances.
* Auth (when the fake is given a username): the v1 HTTP login the client POSTs
  (``/nacos/v1/auth/users/login?username=&password=`` and ``/nacos/v1/auth/login``) returns an
  ``accessToken``; naming requests without a valid ``accessToken`` header fail the way Nacos'
  ``RemoteRequestAuthFilter`` does (the handler's response type, resultCode 500, errorCode 403). AK/SK
  headers (``ak``, ``data``, ``signature``) are recorded and, when the fake has a secret key, checked
  (HMAC-SHA1 of ``data``, base64).
* ``GET /nacos/serverlist`` on the HTTP port plays a Nacos address server, answering this fake's IP.

Not faithful (on purpose, to keep the fake small): pushes are sent at once, not after Nacos' 500 ms push
delay, and are not retried when unacknowledged; no persistent instances over gRPC, no batch registration,
no clusters beyond the name, no empty-service cleaner (a service stays listed until ``remove_service``), no
``ClientDetectionRequest``/``ConnectResetRequest`` from the server, no v1 naming HTTP API, no TLS.

Driver methods are synchronous (pushes are queued on the streams) and must be called from the event loop
thread that runs the server. The driver's own instances are not bound to any client connection.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
from aiohttp import web
from google.protobuf.any_pb2 import Any as AnyProto
from v2.nacos.transport.grpcauto.nacos_grpc_service_pb2 import Metadata, Payload

log = logging.getLogger("tests.fakes.nacos_server")

GRPC_PORT_OFFSET = 1000
DEFAULT_GROUP = "DEFAULT_GROUP"
DEFAULT_NAMESPACE = "public"
DEFAULT_CLUSTER = "DEFAULT"

# Abilities the server announces in SetupAckRequest (Nacos 3 server abilities).
SERVER_ABILITIES = {"supportPersistentInstanceByGrpc": True, "fuzzyWatch": True, "lock": True, "mcp": True}

# Which response type each naming request is answered with (also used for auth failures).
_RESPONSE_TYPES = {
    "ServiceListRequest": "ServiceListResponse",
    "SubscribeServiceRequest": "SubscribeServiceResponse",
    "ServiceQueryRequest": "QueryServiceResponse",
    "InstanceRequest": "InstanceResponse",
    "BatchInstanceRequest": "BatchInstanceResponse",
    "PersistentInstanceRequest": "InstanceResponse",
}

InstanceKey = tuple[str, int, str]  # (ip, port, clusterName); a garbage instance gets a unique key
ServiceKey = tuple[str, str, str]  # (namespace, group, service)


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the fake received it: the payload type, its JSON body and Metadata.headers."""

    type: str
    body: dict[str, Any]
    headers: dict[str, str]
    connection_id: str | None


@dataclass(slots=True)
class _Instance:
    data: dict[str, Any]  # the instance JSON as pushed (hosts[] entry)
    owner: str | None  # connection id that registered it (ephemeral), None for the driver's


@dataclass(slots=True)
class _Service:
    instances: dict[Any, _Instance] = field(default_factory=dict)
    protect_threshold: float | None = None


@dataclass(slots=True)
class _Connection:
    id: str
    peer: str
    out: asyncio.Queue[Payload | None]
    labels: dict[str, str]
    client_version: str
    subscriptions: set[ServiceKey] = field(default_factory=set)


def _grouped(group: str, service: str) -> str:
    return f"{group}@@{service}"


def _payload(type_: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> Payload:
    """A Payload as Nacos' GrpcUtils.convert builds it: JSON in Any.value, no type_url."""
    data = json.dumps(body, separators=(",", ":")).encode()
    return Payload(metadata=Metadata(type=type_, headers=headers or {}), body=AnyProto(value=data))


def _ok(**fields: Any) -> dict[str, Any]:
    return {"resultCode": 200, "errorCode": 0, "success": True, "requestId": "", **fields}


def _error(error_code: int, message: str) -> dict[str, Any]:
    return {"resultCode": 500, "errorCode": error_code, "message": message, "success": False, "requestId": ""}


def _peer_address(peer: str) -> tuple[str, int]:
    """`ipv4:127.0.0.1:5000` / `ipv6:[::1]:5000` -> (ip, port)."""
    _, _, rest = peer.partition(":")
    host, _, port = rest.rpartition(":")
    return host.strip("[]"), int(port or 0)


class FakeNacos:
    """A Nacos 2.x/3.x server: gRPC on ``http_port + 1000``, the v1 login and address-server routes on HTTP.

    ``FakeNacos(username=..., password=...)`` requires login; ``secret_key`` makes it verify AK/SK signatures.
    ``address`` is what a client is configured with (``host:http_port``).
    """

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | None = None,
        secret_key: str | None = None,
        support_ability_negotiation: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        self.host = host
        self.username = username
        self.password = password
        self.secret_key = secret_key
        self.support_ability_negotiation = support_ability_negotiation
        self.http_port = 0
        self.requests: list[RecordedRequest] = []
        self.acks: list[dict[str, Any]] = []
        self.logins: list[dict[str, str]] = []
        self._services: dict[ServiceKey, _Service] = {}
        self._connections: dict[str, _Connection] = {}  # by peer
        self._tokens: set[str] = set()
        self._last_ref_time = 0
        self._push_id = 0
        self._garbage_id = 0
        self._grpc: grpc.aio.Server | None = None
        self._http: web.AppRunner | None = None
        self._streams: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()

    # ---------------------------------------------------------------- lifecycle

    @property
    def grpc_port(self) -> int:
        return self.http_port + GRPC_PORT_OFFSET

    @property
    def address(self) -> str:
        """``host:http_port``, the server address a Nacos client is configured with."""
        return f"{self.host}:{self.http_port}"

    @property
    def running(self) -> bool:
        return self._grpc is not None

    async def start(self) -> None:
        """Bind an HTTP port P whose P+1000 is free too, then serve gRPC on P+1000."""
        for _ in range(50):
            port = self.http_port or _free_port(self.host)
            if port + GRPC_PORT_OFFSET > 65535:
                continue
            try:
                await self._start_http(port)
            except OSError:
                if self.http_port:
                    raise
                continue
            try:
                await self._start_grpc(port + GRPC_PORT_OFFSET)
            except (OSError, RuntimeError):
                await self._stop_http()
                if self.http_port:
                    raise
                continue
            self.http_port = port
            return
        raise RuntimeError("no free port pair (P, P+1000) found")

    async def stop(self) -> None:
        """Stop serving: open streams break, connections and their ephemeral instances are dropped."""
        if self._grpc is not None:
            server, self._grpc = self._grpc, None
            await server.stop(grace=None)
        for task in list(self._streams):
            task.cancel()
        for conn in list(self._connections.values()):
            self._drop_connection(conn)
        await self._stop_http()

    async def go_down(self) -> None:
        """Simulate an outage: like ``stop`` but keeps the ports and the driver's state for ``come_back``."""
        await self.stop()

    async def come_back(self) -> None:
        """Serve again on the same ports with the state the driver left."""
        await self.start()

    async def _start_http(self, port: int) -> None:
        app = web.Application()
        app.router.add_post("/nacos/v1/auth/users/login", self._login)
        app.router.add_post("/nacos/v1/auth/login", self._login)
        app.router.add_get("/nacos/serverlist", self._serverlist)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self.host, port, reuse_address=True)
        try:
            await site.start()
        except OSError:
            await runner.cleanup()
            raise
        self._http = runner

    async def _stop_http(self) -> None:
        if self._http is not None:
            runner, self._http = self._http, None
            await runner.cleanup()

    async def _start_grpc(self, port: int) -> None:
        # so_reuseport off: a port still held by someone else must fail here, not be shared silently.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "Request",
                    {
                        "request": grpc.unary_unary_rpc_method_handler(
                            self._request,
                            request_deserializer=Payload.FromString,
                            response_serializer=Payload.SerializeToString,
                        )
                    },
                ),
                grpc.method_handlers_generic_handler(
                    "BiRequestStream",
                    {
                        "requestBiStream": grpc.stream_stream_rpc_method_handler(
                            self._bi_stream,
                            request_deserializer=Payload.FromString,
                            response_serializer=Payload.SerializeToString,
                        )
                    },
                ),
            )
        )
        bound = server.add_insecure_port(f"{self.host}:{port}")
        if bound != port:
            await server.stop(None)
            raise OSError(f"cannot bind gRPC port {port}")
        await server.start()
        self._grpc = server

    # ---------------------------------------------------------------- driver API

    def register(
        self,
        service: str,
        ip: str,
        port: int,
        *,
        group: str = DEFAULT_GROUP,
        namespace: str = DEFAULT_NAMESPACE,
        weight: float = 1.0,
        healthy: bool = True,
        enabled: bool = True,
        metadata: dict[str, str] | None = None,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        """Add or replace an instance (same ip, port and cluster) and push the service to its subscribers."""
        data = self._instance_json(
            service,
            group,
            {
                "ip": ip,
                "port": port,
                "weight": weight,
                "healthy": healthy,
                "enabled": enabled,
                "ephemeral": True,
                "clusterName": cluster,
                "metadata": dict(metadata or {}),
            },
        )
        self._service(namespace, group, service).instances[(ip, port, cluster)] = _Instance(data, None)
        self._notify((namespace, group, service))

    def deregister(
        self,
        service: str,
        ip: str,
        port: int,
        *,
        group: str = DEFAULT_GROUP,
        namespace: str = DEFAULT_NAMESPACE,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        """Remove an instance; the service itself stays listed (Nacos keeps empty services for a while)."""
        svc = self._services.get((namespace, group, service))
        if svc is not None and svc.instances.pop((ip, port, cluster), None) is not None:
            self._notify((namespace, group, service))

    def set_healthy(
        self,
        service: str,
        ip: str,
        port: int,
        healthy: bool,
        *,
        group: str = DEFAULT_GROUP,
        namespace: str = DEFAULT_NAMESPACE,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        self._update(service, ip, port, group, namespace, cluster, healthy=healthy)

    def set_enabled(
        self,
        service: str,
        ip: str,
        port: int,
        enabled: bool,
        *,
        group: str = DEFAULT_GROUP,
        namespace: str = DEFAULT_NAMESPACE,
        cluster: str = DEFAULT_CLUSTER,
    ) -> None:
        self._update(service, ip, port, group, namespace, cluster, enabled=enabled)

    def set_protect_threshold(
        self,
        service: str,
        threshold: float,
        *,
        group: str = DEFAULT_GROUP,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        """Give the service ServiceMetadata with this protectThreshold (0..1), as the console would."""
        self._service(namespace, group, service).protect_threshold = threshold
        self._notify((namespace, group, service))

    def create_service(
        self, service: str, *, group: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        """A service without instances (created through the console or the open API)."""
        self._service(namespace, group, service)

    def remove_service(
        self, service: str, *, group: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        """Drop the service and its instances (what Nacos' empty-service cleaner or a console delete does).

        Subscribers get a last push with no hosts, as Nacos sends when a service's instances go away."""
        key = (namespace, group, service)
        svc = self._services.pop(key, None)
        if svc is not None:
            if svc.instances:
                svc.instances.clear()
                self._push(key, svc)
            self._changed.set()

    def push_garbage(
        self,
        service: str,
        instance: dict[str, Any],
        *,
        group: str = DEFAULT_GROUP,
        namespace: str = DEFAULT_NAMESPACE,
    ) -> None:
        """Add a raw (malformed) hosts[] entry, kept as given, and push. It must still parse as the client's
        pydantic ``Instance`` (``ip`` and ``port`` present, types coercible), or the client drops the whole
        push; values such as an empty or bogus ip, a port out of range or a negative weight pass."""
        self._garbage_id += 1
        data = {"enabled": True, "healthy": True, "serviceName": _grouped(group, service), **instance}
        self._service(namespace, group, service).instances[("garbage", self._garbage_id)] = _Instance(
            data, None
        )
        self._notify((namespace, group, service))

    def clear_garbage(
        self, service: str, *, group: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE
    ) -> None:
        """Remove every entry `push_garbage` added to the service, and push."""
        svc = self._services.get((namespace, group, service))
        if svc is not None:
            for key in [k for k in svc.instances if k[0] == "garbage"]:
                del svc.instances[key]
            self._notify((namespace, group, service))

    def services(self, *, group: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE) -> list[str]:
        return sorted(s for (ns, g, s) in self._services if ns == namespace and g == group)

    def instances(
        self, service: str, *, group: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE
    ) -> list[dict[str, Any]]:
        svc = self._services.get((namespace, group, service))
        return [dict(i.data) for i in svc.instances.values()] if svc else []

    def subscribers(
        self, service: str, *, group: str = DEFAULT_GROUP, namespace: str = DEFAULT_NAMESPACE
    ) -> int:
        """How many connections are subscribed to the service."""
        key = (namespace, group, service)
        return sum(1 for c in self._connections.values() if key in c.subscriptions)

    @property
    def connections(self) -> list[str]:
        """Ids of the registered client connections."""
        return [c.id for c in self._connections.values()]

    def requests_of(self, type_: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.type == type_]

    async def wait_changed(self) -> None:
        """Wait for the next change of connections, subscriptions or registrations (test helper)."""
        self._changed.clear()
        await self._changed.wait()

    # ---------------------------------------------------------------- state helpers

    def _service(self, namespace: str, group: str, service: str) -> _Service:
        return self._services.setdefault((namespace, group, service), _Service())

    def _update(
        self, service: str, ip: str, port: int, group: str, namespace: str, cluster: str, **changes: Any
    ) -> None:
        svc = self._services.get((namespace, group, service))
        inst = svc.instances.get((ip, port, cluster)) if svc else None
        if inst is None:
            raise KeyError(f"no instance {ip}:{port} in {namespace}/{group}/{service}")
        inst.data.update(changes)
        self._notify((namespace, group, service))

    @staticmethod
    def _instance_json(service: str, group: str, inst: dict[str, Any]) -> dict[str, Any]:
        """A hosts[] entry as Nacos 2 pushes it (InstanceUtil.parseToApiInstance + defaults)."""
        cluster = inst.get("clusterName") or DEFAULT_CLUSTER
        grouped = _grouped(group, service)
        return {
            "instanceId": f"{inst['ip']}#{inst['port']}#{cluster}#{grouped}",
            "ip": inst["ip"],
            "port": inst["port"],
            "weight": float(inst.get("weight", 1.0)),
            "healthy": bool(inst.get("healthy", True)),
            "enabled": bool(inst.get("enabled", True)),
            "ephemeral": bool(inst.get("ephemeral", True)),
            "clusterName": cluster,
            "serviceName": grouped,
            "metadata": dict(inst.get("metadata") or {}),
            "instanceHeartBeatInterval": 5000,
            "instanceHeartBeatTimeOut": 15000,
            "ipDeleteTimeout": 30000,
            "instanceIdGenerator": "simple",
        }

    def _next_ref_time(self) -> int:
        self._last_ref_time = max(self._last_ref_time + 1, int(time.time() * 1000))
        return self._last_ref_time

    def _service_info(
        self, key: ServiceKey, *, clusters: str = "", healthy_only: bool = False
    ) -> dict[str, Any]:
        """ServiceUtil.selectInstancesWithHealthyProtection(enableOnly=true) as JSON."""
        _, group, name = key
        svc = self._services.get(key)
        wanted = {c for c in clusters.split(",") if c.strip()}
        all_hosts = [
            dict(i.data)
            for i in (svc.instances.values() if svc else ())
            if i.data.get("enabled", True) and (not wanted or i.data.get("clusterName") in wanted)
        ]
        hosts = [h for h in all_hosts if not healthy_only or h.get("healthy", True)]
        protected = False
        if svc is not None and svc.protect_threshold is not None and all_hosts:
            healthy = sum(1 for h in all_hosts if h.get("healthy", True))
            if healthy / len(all_hosts) <= max(svc.protect_threshold, 0.0):
                protected = True
                hosts = [{**h, "healthy": True} for h in hosts]
        return {
            "name": name,
            "groupName": group,
            "clusters": clusters,
            "cacheMillis": 10000,
            "hosts": hosts,
            "lastRefTime": self._next_ref_time(),
            "checksum": "",
            "allIps": False,
            "reachProtectionThreshold": protected,
            "valid": True,
        }

    def _notify(self, key: ServiceKey) -> None:
        svc = self._services.get(key)
        if svc is not None:
            self._push(key, svc)
        self._changed.set()

    def _push(self, key: ServiceKey, svc: _Service) -> None:
        for conn in self._connections.values():
            if key in conn.subscriptions:
                self._push_id += 1
                info = self._service_info(key)
                if key not in self._services:  # removed: push what is left (nothing)
                    info["hosts"] = []
                body = {
                    "headers": {},
                    "requestId": str(self._push_id),
                    "module": "naming",
                    "serviceInfo": info,
                }
                conn.out.put_nowait(_payload("NotifySubscriberRequest", body))

    def _drop_connection(self, conn: _Connection) -> None:
        """A client connection closed: forget its subscriptions and remove its ephemeral instances."""
        if self._connections.get(conn.peer) is not conn:
            return
        del self._connections[conn.peer]
        conn.out.put_nowait(None)
        for key, svc in list(self._services.items()):
            owned = [k for k, i in svc.instances.items() if i.owner == conn.id]
            for k in owned:
                del svc.instances[k]
            if owned:
                self._push(key, svc)
        self._changed.set()

    # ---------------------------------------------------------------- HTTP

    async def _login(self, request: web.Request) -> web.Response:
        # The Python client sends the credentials as a query string with an empty body; others send a form.
        params: dict[str, str] = dict(request.query)
        if request.can_read_body:
            form = await request.post()
            params.update({k: str(v) for k, v in form.items()})
        self.logins.append(params)
        if self.username is None:
            return web.json_response({"accessToken": "", "tokenTtl": 18000, "globalAdmin": False})
        if params.get("username") != self.username or params.get("password") != self.password:
            return web.Response(status=403, text="user not found!")
        token = secrets.token_hex(16)
        self._tokens.add(token)
        return web.json_response({"accessToken": token, "tokenTtl": 18000, "globalAdmin": False})

    async def _serverlist(self, request: web.Request) -> web.Response:
        return web.Response(text=f"{self.host}\n")

    # ---------------------------------------------------------------- gRPC

    async def _request(self, payload: Payload, context: grpc.aio.ServicerContext) -> Payload:
        type_ = payload.metadata.type
        try:
            body = json.loads(payload.body.value or b"{}")
        except ValueError:
            return _payload("ErrorResponse", _error(500, "unparsable request body"))
        conn = self._connections.get(context.peer())
        headers = dict(payload.metadata.headers)
        self.requests.append(RecordedRequest(type_, body, headers, conn.id if conn else None))

        if type_ == "ServerCheckRequest":
            ip, port = _peer_address(context.peer())
            conn_id = f"{int(time.time() * 1000)}_{ip}_{port}"
            return _payload(
                "ServerCheckResponse",
                _ok(connectionId=conn_id, supportAbilityNegotiation=self.support_ability_negotiation),
            )
        if conn is None:
            return _payload("ErrorResponse", _error(301, "Connection is unregistered."))
        if type_ == "HealthCheckRequest":
            return _payload("HealthCheckResponse", {"resultCode": 200, "errorCode": 0, "success": True})

        response_type = _RESPONSE_TYPES.get(type_)
        if response_type is None:
            return _payload("ErrorResponse", _error(302, "RequestHandler Not Found"))
        denied = self._auth_failure({**body.get("headers", {}), **headers}, body)
        if denied is not None:
            failure = _error(403, denied)
            if response_type == "ServiceListResponse":
                failure["count"] = 0  # an int field: Jackson writes it even on failure
            return _payload(response_type, failure)

        if type_ == "ServiceListRequest":
            return _payload(response_type, self._list_services(body))
        if type_ == "SubscribeServiceRequest":
            return _payload(response_type, self._subscribe(conn, body))
        if type_ == "ServiceQueryRequest":
            key = (body.get("namespace", ""), body.get("groupName", ""), body.get("serviceName", ""))
            info = self._service_info(
                key, clusters=body.get("cluster") or "", healthy_only=bool(body.get("healthOnly"))
            )
            return _payload(response_type, _ok(serviceInfo=info))
        if type_ == "InstanceRequest":
            return _payload(response_type, self._instance(conn, body))
        return _payload("ErrorResponse", _error(302, "RequestHandler Not Found"))

    def _auth_failure(self, headers: dict[str, str], body: dict[str, Any]) -> str | None:
        if self.username is not None and headers.get("accessToken") not in self._tokens:
            return "token invalid!" if headers.get("accessToken") else "user not found!"
        if self.secret_key is not None:
            data, signature = headers.get("data", ""), headers.get("signature", "")
            expected = base64.encodebytes(
                hmac.new(self.secret_key.encode(), data.encode(), hashlib.sha1).digest()
            ).decode()
            if not headers.get("ak") or signature.strip() != expected.strip():
                return "validate signature failed"
        return None

    def _list_services(self, body: dict[str, Any]) -> dict[str, Any]:
        namespace, group = body.get("namespace", ""), body.get("groupName", "")
        names = sorted(s for (ns, g, s) in self._services if ns == namespace and g == group)
        page_no, page_size = int(body.get("pageNo") or 0), int(body.get("pageSize") or 0)
        start = max((page_no - 1) * page_size, 0)
        page = names[start : start + page_size] if start < len(names) else []
        return _ok(count=len(names), serviceNames=page)

    def _subscribe(self, conn: _Connection, body: dict[str, Any]) -> dict[str, Any]:
        key = (body.get("namespace", ""), body.get("groupName", ""), body.get("serviceName", ""))
        if body.get("subscribe", True):
            conn.subscriptions.add(key)
        else:
            conn.subscriptions.discard(key)
        self._changed.set()
        return _ok(serviceInfo=self._service_info(key, clusters=body.get("clusters") or ""))

    def _instance(self, conn: _Connection, body: dict[str, Any]) -> dict[str, Any]:
        namespace, group, service = body.get("namespace", ""), body.get("groupName", ""), body["serviceName"]
        inst = body.get("instance") or {}
        kind = body.get("type", "")
        cluster = inst.get("clusterName") or DEFAULT_CLUSTER
        ikey = (inst.get("ip"), inst.get("port"), cluster)
        if kind == "registerInstance":
            data = self._instance_json(service, group, inst)
            self._service(namespace, group, service).instances[ikey] = _Instance(data, conn.id)
            self._notify((namespace, group, service))
        elif kind == "deregisterInstance":
            svc = self._services.get((namespace, group, service))
            if svc is not None and svc.instances.pop(ikey, None) is not None:
                self._notify((namespace, group, service))
        else:
            return _error(400, f"unsupported request type {kind}")
        return _ok(type=kind)

    async def _bi_stream(
        self, requests: AsyncIterator[Payload], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[Payload]:
        peer = context.peer()
        out: asyncio.Queue[Payload | None] = asyncio.Queue()
        holder: list[_Connection] = []
        reader = asyncio.create_task(self._read_stream(requests, peer, out, holder))
        self._streams.add(reader)
        try:
            while True:
                item = await out.get()
                if item is None:
                    return
                yield item
        finally:
            reader.cancel()
            self._streams.discard(reader)
            for conn in holder:
                self._drop_connection(conn)

    async def _read_stream(
        self,
        requests: AsyncIterator[Payload],
        peer: str,
        out: asyncio.Queue[Payload | None],
        holder: list[_Connection],
    ) -> None:
        try:
            async for payload in requests:
                type_ = payload.metadata.type
                try:
                    body = json.loads(payload.body.value or b"{}")
                except ValueError:
                    continue
                if type_ == "ConnectionSetupRequest":
                    ip, port = _peer_address(peer)
                    conn = _Connection(
                        id=f"{int(time.time() * 1000)}_{ip}_{port}",
                        peer=peer,
                        out=out,
                        labels=dict(body.get("labels") or {}),
                        client_version=body.get("clientVersion", ""),
                    )
                    old = self._connections.get(peer)
                    if old is not None:
                        self._drop_connection(old)
                    self._connections[peer] = conn
                    holder.append(conn)
                    self.requests.append(
                        RecordedRequest(type_, body, dict(payload.metadata.headers), conn.id)
                    )
                    if body.get("abilityTable") is not None:
                        out.put_nowait(
                            _payload(
                                "SetupAckRequest",
                                {
                                    "headers": {},
                                    "requestId": "",
                                    "module": "internal",
                                    "abilityTable": SERVER_ABILITIES,
                                },
                            )
                        )
                    self._changed.set()
                elif type_.endswith("Response"):
                    self.acks.append({"type": type_, **body})
                    self._changed.set()
        except (asyncio.CancelledError, grpc.aio.AioRpcError):
            pass
        finally:
            # The client closed its side (or the call broke): end our side too.
            out.put_nowait(None)


def _free_port(host: str) -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
