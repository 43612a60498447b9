"""A protocol-faithful fake Consul agent for tests: aiohttp.web in the test's own event loop.

The wire protocol follows docs/registries.md §2 (Consul's HTTP API as py-consul 1.8 and
Consul's own Go client use it), so the real py-consul client and our watcher talk to it unchanged. The
driver (the test) changes the catalog through synchronous methods, which wake blocking queries exactly
like HTTP writes do.

Fidelity choices, and why:

* One Raft index that every write advances, and **per-query indexes** as the state store keeps them:
  `/v1/catalog/services` answers with the index of the services table (any registration, change or
  deregistration; health changes do not move it); `/v1/health/service/<name>` with the service's own
  index (its registrations, deregistrations and check changes). A name that has no instance answers
  with the "service extinction" index (the last time any service lost its last instance), else the
  highest table index, as `maxIndexAndWatchChForService` does. The server never answers index 0.
* Blocking queries follow `blockingquery.Query`: `index` 0 or missing answers at once; otherwise the
  query's index is checked again on every write that touches what it reads (the state store's watch
  channels: a service's health query wakes for that service, the catalog for registrations and
  deregistrations, queries of a service without instances for any write) until it exceeds `index` or
  `wait` (Go duration, default 5 m, capped at 10 m, plus up to wait/16 random jitter) expires, and a
  timeout answers **200 with the same index and body**. The body is built once, when answering.
  `restore_snapshot(index)` abandons the state store like a snapshot restore: every index drops to
  `index` and every blocked query returns at once with that lower index.
* Every answer carries `X-Consul-Index`, `X-Consul-KnownLeader: true`, `X-Consul-LastContact: 0`,
  `X-Consul-Effective-Consistency`, `X-Consul-Query-Backend: blocking-query` and
  `X-Consul-Default-Acl-Policy`. Bad `index`/`wait` values give 400 "Invalid index" / "Invalid wait
  time"; an unknown `dc` gives 500 "No path to datacenter"; `ns`/`partition` (or their headers) give
  Consul CE's 400 "... is a Consul Enterprise feature".
* ACLs when `token` is set (default policy deny): the token is read from `X-Consul-Token`,
  `Authorization: Bearer` or the deprecated `?token=`. An unknown token gets 403 "ACL not found"; the
  anonymous token (no token) reads a filtered, empty catalog, and its writes get 403 "Permission
  denied: ...". The configured token may do everything (a management token).
* Health entries are shaped like Consul 1.2x's: `Node` with the node's address, `Service` with
  `Address` possibly `""` (the node's address is then the real one), `Tags` always a list, `Meta` `null`
  when empty (as Consul encodes a nil map), `Weights` defaulting to {Passing: 1, Warning: 1}, and
  `Checks` = the node's `serfHealth` plus the instance's check. Maintenance mode is the extra critical
  check `_service_maintenance:<id>`, as the agent adds it. `?passing` keeps entries whose checks all
  pass; `?tag` keeps entries having every tag given. Entries sort by node, then service ID.
* The Consul servers' own `consul` service is in the catalog (port 8300 on the server's node), since a
  watcher with no tag filter sees it in a real datacenter too (`consul_service=False` leaves it out).
* `PUT /v1/agent/service/register` takes py-consul's lower-case keys as well as Consul's CamelCase and
  snake_case (Consul decodes case-insensitively); a service with checks starts with the checks' `Status`,
  else critical, as a new check does. Re-registering unchanged content writes nothing.

Not faithful (on purpose, to keep the fake small): one datacenter and one node per address given by the
driver, no anti-entropy or agent-local state (the agent endpoints write the catalog directly), no
`filter` expressions (400), no `near`, `node-meta`, `cached` or streaming, no KV, sessions or Connect,
and only `GET /v1/catalog/services`, `GET /v1/health/service/<name>`, `GET /v1/status/leader` and the
two agent service endpoints are served (anything else is 404, like an unknown endpoint).

Driver methods must be called from the event loop thread that runs the server.
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import uuid
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from aiohttp import web
from aiohttp.typedefs import Handler

JSON = Any

# Consul's agent answers with this much metadata; a fresh datacenter's Raft index starts low but above 1.
_FIRST_INDEX = 12
_DEFAULT_WAIT = 300.0  # Consul's default blocking wait (5 m)
_MAX_WAIT = 600.0  # MaxQueryTime (10 m)
_ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
_SERVER_NODE = "consul-server-1"
_SERVER_ADDRESS = "127.0.0.1"
_AGENT_NODE = "fake-agent"
_STATUSES = ("passing", "warning", "critical", "maintenance")
_SERVICE_MAINT_PREFIX = "_service_maintenance:"
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go `time.ParseDuration` string ("30s", "1m30s", "250ms"); ValueError if invalid.
    A bare number other than 0 has no unit and is invalid, as in Go."""
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if not match:
            raise ValueError(f"time: invalid duration {text!r}")
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if not body:
        raise ValueError(f"time: invalid duration {text!r}")
    return sign * total


class _Down(Exception):
    """The agent went down while the request was open."""


class _ApiError(Exception):
    """An HTTP error answer: Consul's agent writes the reason as plain text."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class _Node:
    name: str
    address: str
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    create_index: int = 0


@dataclass
class _Instance:
    """One service instance (a NodeService) and its own check."""

    id: str
    name: str
    node: str
    address: str
    port: int
    tags: list[str]
    meta: dict[str, str]
    weights: dict[str, int]
    status: str | None  # None: registered without a check
    create_index: int = 0
    modify_index: int = 0

    def content(self) -> tuple[Any, ...]:
        """What a re-registration compares to decide whether anything changed."""
        return (
            self.name,
            self.node,
            self.address,
            self.port,
            self.tags,
            self.meta,
            self.weights,
            self.status,
        )


def _ci(obj: JSON) -> dict[str, Any]:
    """Consul decodes request bodies case-insensitively and accepts snake_case aliases."""
    if not isinstance(obj, dict):
        raise _ApiError(400, "Request decode failed: expected a JSON object")
    return {str(k).lower().replace("_", ""): v for k, v in obj.items()}


class FakeConsul:
    """The fake agent (and its one-server datacenter). `async with FakeConsul(...) as consul`, or
    `await start()` / `await stop()`."""

    def __init__(
        self,
        *,
        token: str | None = None,
        datacenter: str = "dc1",
        consul_service: bool = True,
        jitter: bool = True,
    ) -> None:
        self.token = token
        self.datacenter = datacenter
        self.jitter = jitter
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        """Every request as (method, path, query), for tests that count round trips."""
        self._index = _FIRST_INDEX
        self._nodes: dict[str, _Node] = {}
        self._instances: dict[str, _Instance] = {}
        self._service_index: dict[str, int] = {}
        self._services_table_index = _FIRST_INDEX
        self._extinction_index: int | None = None
        self._garbage: dict[str | None, str] = {}
        self._garbage_index: dict[str | None, int] = {}
        # Blocked queries wait on the event of what they read: a service name, None for the catalog.
        self._watches: dict[str | None, asyncio.Event] = {}
        self._generation = 0  # bumped by restore_snapshot: blocked queries return at once
        self._down = False
        self.block = True
        """False: blocking queries answer at once with the current index (a misbehaving server or proxy)."""
        self._open: dict[int, web.BaseRequest] = {}  # requests are unhashable: keyed by id()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self.port = 0
        if consul_service:
            self._register(
                _Instance(
                    id="consul",
                    name="consul",
                    node=_SERVER_NODE,
                    address="",
                    port=8300,
                    tags=[],
                    meta={},
                    weights={"Passing": 1, "Warning": 1},
                    status=None,
                ),
                _SERVER_ADDRESS,
            )

    # ----------------------------------------------------------------------------------------------------
    # Lifecycle

    @property
    def url(self) -> str:
        """`http://127.0.0.1:<port>`."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        """Serve on a free port of 127.0.0.1."""
        app = web.Application(middlewares=[self._serve])
        app.router.add_get("/v1/catalog/services", self._catalog_services)
        app.router.add_get("/v1/health/service/{name}", self._health_service)
        app.router.add_get("/v1/status/leader", self._status_leader)
        app.router.add_put("/v1/agent/service/register", self._agent_register)
        app.router.add_put("/v1/agent/service/deregister/{id}", self._agent_deregister)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        await self._listen()

    async def stop(self) -> None:
        """Close every connection and stop serving."""
        # Blocked handlers must end now, or the runner's cleanup waits for them.
        self._down = True
        self._abort_open()
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self._site = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def go_down(self) -> None:
        """An agent outage: open requests (blocked queries included) lose their connection, and new
        connections are refused until `come_back()`. The catalog survives (the servers kept it)."""
        self._down = True
        self._abort_open()
        self._wake()
        if self._site is not None:
            await self._site.stop()
            self._site = None

    async def come_back(self) -> None:
        """Serve again on the same port."""
        self._down = False
        await self._listen()

    async def _listen(self) -> None:
        assert self._runner is not None
        self._site = web.TCPSite(self._runner, "127.0.0.1", self.port, reuse_address=True)
        await self._site.start()
        self.port = self._site.port

    def _abort_open(self) -> None:
        for request in list(self._open.values()):
            if request.transport is not None:
                request.transport.abort()
        self._open.clear()

    # ----------------------------------------------------------------------------------------------------
    # Driver API

    def register(
        self,
        name: str,
        id: str | None = None,
        address: str = "",
        port: int = 0,
        tags: tuple[str, ...] | list[str] = (),
        meta: dict[str, str] | None = None,
        status: str = "passing",
        weight: int = 1,
        *,
        node: str | None = None,
        node_address: str | None = None,
    ) -> None:
        """Register (or update) an instance with one check in `status`. The instance lives on `node`
        (default: a node named after its address, so instances of one address share a node) whose
        address is `node_address` (default: `address`, else 127.0.0.1)."""
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}")
        node_address = node_address or address or "127.0.0.1"
        instance = _Instance(
            id=id or name,
            name=name,
            node=node or f"node-{node_address}",
            address=address,
            port=port,
            tags=list(tags),
            meta=dict(meta or {}),
            weights={"Passing": weight, "Warning": 1},
            status=status,
        )
        self._register(instance, node_address)

    def deregister(self, id: str) -> None:
        """Remove an instance; KeyError if there is none."""
        instance = self._instances.pop(id)
        self._write(instance.name, None)
        self._services_table_index = self._index
        if any(i.name == instance.name for i in self._instances.values()):
            self._service_index[instance.name] = self._index
        else:
            # The state store drops the service's index entry and records the extinction instead.
            self._service_index.pop(instance.name, None)
            self._extinction_index = self._index

    def set_status(self, id: str, status: str) -> None:
        """Change an instance's check (passing, warning, critical, maintenance)."""
        if status not in _STATUSES:
            raise ValueError(f"status must be one of {_STATUSES}")
        instance = self._instances[id]
        if instance.status == status:
            return
        instance.status = status
        self._write(instance.name)
        # A check write moves the service's index, not the services table's.
        self._service_index[instance.name] = self._index

    def restore_snapshot(self, index: int) -> None:
        """Restore the state from a snapshot taken at Raft index `index` (lower than now): every index
        drops to `index` and blocked queries return at once with it, so clients see the index go
        backwards. The catalog's content is kept."""
        self._index = index
        self._services_table_index = min(self._services_table_index, index)
        for name in self._service_index:
            self._service_index[name] = min(self._service_index[name], index)
        for instance in self._instances.values():
            instance.create_index = min(instance.create_index, index)
            instance.modify_index = min(instance.modify_index, index)
        if self._extinction_index is not None:
            self._extinction_index = min(self._extinction_index, index)
        self._generation += 1
        self._wake()

    def garbage(self, service: str | None, body: str | JSON | None) -> None:
        """Serve `body` (a string verbatim, else as JSON) instead of the health answer of `service`, or of
        the catalog when `service` is None, with a new index so blocked clients wake; `None` serves the
        real answer again (with another new index)."""
        self._write(service)
        if body is None:
            self._garbage.pop(service, None)
            self._garbage_index.pop(service, None)
            if service is None:
                self._services_table_index = self._index
            elif service in self._service_index:
                self._service_index[service] = self._index
            return
        self._garbage[service] = body if isinstance(body, str) else json.dumps(body)
        self._garbage_index[service] = self._index

    def health_body(self, service: str) -> list[JSON]:
        """The entries `/v1/health/service/<service>` answers now (a deep copy the test may edit)."""
        return copy.deepcopy(self._health_entries(service))

    def catalog_index(self) -> int:
        """The index `/v1/catalog/services` answers with now."""
        return self._catalog_index()

    def service_index(self, service: str) -> int:
        """The index `/v1/health/service/<service>` answers with now."""
        return self._health_index(service)

    def count(self, path: str) -> int:
        """How many requests were made to `path`."""
        return sum(1 for _, p, _ in self.requests if p == path)

    # ----------------------------------------------------------------------------------------------------
    # State

    def _write(self, *keys: str | None) -> None:
        """One Raft apply touching `keys` (service names, None for the catalog): advance the index and wake
        the blocked queries on them, in that order, and those of services without instances (whose index
        is the extinction index or the latest one). A service's query is woken before the catalog's,
        whose answer takes longer to build here, one process doing what a Consul agent does in parallel."""
        self._index += 1
        self._wake(*keys, *(k for k in self._watches if k is not None and k not in self._service_index))

    def _wake(self, *keys: str | None) -> None:
        """Wake the blocked queries on `keys`, or all of them when no key is given."""
        if keys:
            events = [event for key in keys if (event := self._watches.pop(key, None)) is not None]
        else:
            events, self._watches = list(self._watches.values()), {}
        for event in events:
            event.set()

    def _watch(self, key: str | None) -> asyncio.Event:
        """The event a blocked query on `key` waits for; the next write to `key` sets and drops it."""
        event = self._watches.get(key)
        if event is None:
            event = self._watches[key] = asyncio.Event()
        return event

    def _register(self, instance: _Instance, node_address: str) -> None:
        existing = self._instances.get(instance.id)
        node = self._nodes.get(instance.node)
        if existing is not None and existing.content() == instance.content() and node is not None:
            return  # the state store skips writes that change nothing
        self._write(instance.name, None)
        if node is None or node.address != node_address:
            self._nodes[instance.node] = _Node(
                instance.node, node_address, create_index=node.create_index if node else self._index
            )
        instance.create_index = existing.create_index if existing else self._index
        instance.modify_index = self._index
        self._instances[instance.id] = instance
        self._services_table_index = self._index
        self._service_index[instance.name] = self._index

    def _catalog_index(self) -> int:
        if None in self._garbage_index:
            return max(self._garbage_index[None], 1)
        return max(self._services_table_index, 1)

    def _health_index(self, service: str) -> int:
        if service in self._garbage_index:
            return max(self._garbage_index[service], 1)
        if service in self._service_index:
            index = self._service_index[service]
        elif self._extinction_index is not None:
            index = self._extinction_index
        else:
            index = self._index
        return max(index, 1)  # the server never answers index 0

    def _catalog_body(self) -> dict[str, list[str]]:
        services: dict[str, set[str]] = {}
        for instance in self._instances.values():
            services.setdefault(instance.name, set()).update(instance.tags)
        return {name: sorted(tags) for name, tags in sorted(services.items())}

    def _checks(self, instance: _Instance) -> list[JSON]:
        node = self._nodes[instance.node]
        checks: list[JSON] = [
            self._check(
                node, "serfHealth", "Serf Health Status", "passing", None, "Agent alive and reachable"
            )
        ]
        if instance.status == "maintenance":
            checks.append(
                self._check(
                    node,
                    _SERVICE_MAINT_PREFIX + instance.id,
                    "Service Maintenance Mode",
                    "critical",
                    instance,
                    "",
                )
            )
        if instance.status is not None:
            status = "passing" if instance.status == "maintenance" else instance.status
            checks.append(
                self._check(
                    node, f"service:{instance.id}", f"Service '{instance.name}' check", status, instance, ""
                )
            )
        return checks

    def _check(
        self, node: _Node, check_id: str, name: str, status: str, instance: _Instance | None, output: str
    ) -> JSON:
        return {
            "Node": node.name,
            "CheckID": check_id,
            "Name": name,
            "Status": status,
            "Notes": "",
            "Output": output,
            "ServiceID": instance.id if instance else "",
            "ServiceName": instance.name if instance else "",
            "ServiceTags": list(instance.tags) if instance else [],
            "Type": "ttl" if instance and not check_id.startswith(_SERVICE_MAINT_PREFIX) else "",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": instance.create_index if instance else node.create_index,
            "ModifyIndex": instance.modify_index if instance else node.create_index,
        }

    def _entry(self, instance: _Instance) -> JSON:
        node = self._nodes[instance.node]
        return {
            "Node": {
                "ID": node.id,
                "Node": node.name,
                "Address": node.address,
                "Datacenter": self.datacenter,
                "TaggedAddresses": {"lan": node.address, "lan_ipv4": node.address, "wan": node.address},
                "Meta": {"consul-network-segment": ""},
                "CreateIndex": node.create_index,
                "ModifyIndex": node.create_index,
            },
            "Service": {
                "ID": instance.id,
                "Service": instance.name,
                "Tags": list(instance.tags),
                "Address": instance.address,
                "TaggedAddresses": (
                    {"lan_ipv4": {"Address": instance.address, "Port": instance.port}}
                    if instance.address
                    else {}
                ),
                # Consul encodes a nil map as null: a service registered without meta has "Meta": null.
                "Meta": dict(instance.meta) or None,
                "Port": instance.port,
                "Weights": dict(instance.weights),
                "EnableTagOverride": False,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
                "Connect": {},
                "PeerName": "",
                "CreateIndex": instance.create_index,
                "ModifyIndex": instance.modify_index,
            },
            "Checks": self._checks(instance),
        }

    def _health_entries(self, service: str) -> list[JSON]:
        instances = sorted(
            (i for i in self._instances.values() if i.name == service), key=lambda i: (i.node, i.id)
        )
        return [self._entry(i) for i in instances]

    # ----------------------------------------------------------------------------------------------------
    # HTTP

    def _token(self, request: web.Request) -> str | None:
        token = request.headers.get("X-Consul-Token")
        if not token:
            auth = request.headers.get("Authorization", "")
            if auth.lower().startswith("bearer "):
                token = auth[7:].strip()
        if not token:
            token = request.query.get("token")
        return token or None

    def _authorize(self, request: web.Request, *, write: str | None = None) -> bool:
        """True if the request may see everything; False for the anonymous token under default deny
        (reads are filtered to nothing). Raises 403 for unknown tokens and denied writes."""
        if self.token is None:
            return True
        token = self._token(request)
        if token is None:
            if write is not None:
                raise _ApiError(
                    403,
                    f"Permission denied: token with AccessorID '{_ANONYMOUS_ACCESSOR}' lacks permission "
                    f"'service:write' on \"{write}\"",
                )
            return False
        if token != self.token:
            raise _ApiError(403, "ACL not found")
        return True

    def _check_tenancy(self, request: web.Request) -> None:
        """Consul CE rejects Enterprise tenancy (agent/http_oss.go parseEntMeta)."""
        for header, param, what in (
            ("X-Consul-Namespace", "ns", "Namespaces"),
            ("X-Consul-Partition", "partition", "Partitions"),
        ):
            if request.headers.get(header):
                raise _ApiError(400, f'Invalid header: "{header}" - {what} are a Consul Enterprise feature')
            if request.query.get(param):
                raise _ApiError(
                    400, f'Invalid query parameter: "{param}" - {what} are a Consul Enterprise feature'
                )

    def _check_dc(self, request: web.Request) -> None:
        dc = request.query.get("dc")
        if dc and dc != self.datacenter:
            raise _ApiError(500, "No path to datacenter")

    def _headers(self, index: int) -> dict[str, str]:
        return {
            "X-Consul-Index": str(index),
            "X-Consul-KnownLeader": "true",
            "X-Consul-LastContact": "0",
            "X-Consul-Effective-Consistency": "leader",
            "X-Consul-Query-Backend": "blocking-query",
            "X-Consul-Default-Acl-Policy": "deny" if self.token is not None else "allow",
            "Vary": "Accept-Encoding",
        }

    @web.middleware
    async def _serve(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every request: recorded, held in `_open` while answered (an outage cuts it), and its
        `_ApiError` or `_Down` turned into Consul's answer."""
        self.requests.append((request.method, request.path, dict(request.query)))
        try:
            if self._down:
                # A request that slipped in between go_down()'s abort and the listener closing.
                raise _Down
            self._open[id(request)] = request
            return await handler(request)
        except _ApiError as err:
            return self._error(err)
        except _Down:
            return self._lost(request)
        finally:
            self._open.pop(id(request), None)

    def _lost(self, request: web.Request) -> web.Response:
        """The connection of a request caught by an outage is cut; the answer is never delivered."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=503)

    def _error(self, err: _ApiError) -> web.Response:
        return web.Response(status=err.status, text=err.reason, content_type="text/plain")

    async def _blocking(
        self, request: web.Request, key: str | None, index_of: Any, query: Any
    ) -> web.Response:
        """Answer `query() -> (index, body text)` with Consul's blocking semantics; `index_of()` is its
        index alone (what a wake-up checks), `key` what it reads (a service name, None: the catalog)."""
        try:
            min_index = int(request.query.get("index", "0") or "0")
            if min_index < 0:
                raise ValueError
        except ValueError:
            raise _ApiError(400, "Invalid index") from None
        try:
            wait = parse_go_duration(request.query["wait"]) if request.query.get("wait") else 0.0
        except ValueError:
            raise _ApiError(400, "Invalid wait time") from None
        if request.query.get("filter"):
            raise _ApiError(400, "fake consul: filter expressions are not supported")

        index = index_of()
        if min_index > 0 and self.block:
            timeout = min(wait, _MAX_WAIT) if wait > 0 else _DEFAULT_WAIT
            if self.jitter:
                timeout += random.uniform(0, timeout / 16)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            generation = self._generation
            while index <= min_index:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(self._watch(key).wait(), remaining)
                except TimeoutError:
                    pass
                if self._down:
                    raise _Down
                index = index_of()
                if self._generation != generation:
                    break  # the state store was abandoned (snapshot restore): answer at once
        index, body = query()
        return web.Response(text=body, content_type="application/json", headers=self._headers(index))

    async def _catalog_services(self, request: web.Request) -> web.StreamResponse:
        self._check_tenancy(request)
        full = self._authorize(request)
        self._check_dc(request)

        def query() -> tuple[int, str]:
            if None in self._garbage:
                return self._catalog_index(), self._garbage[None]
            return self._catalog_index(), json.dumps(self._catalog_body() if full else {})

        return await self._blocking(request, None, self._catalog_index, query)

    async def _health_service(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self._check_tenancy(request)
        full = self._authorize(request)
        self._check_dc(request)
        passing = request.query.get("passing", "").lower() not in ("", "0", "false")
        tags = request.query.getall("tag", [])

        def query() -> tuple[int, str]:
            if name in self._garbage:
                return self._health_index(name), self._garbage[name]
            entries = self._health_entries(name) if full else []
            if passing:
                entries = [e for e in entries if all(c["Status"] == "passing" for c in e["Checks"])]
            if tags:
                entries = [e for e in entries if all(t in e["Service"]["Tags"] for t in tags)]
            return self._health_index(name), json.dumps(entries)

        return await self._blocking(request, name, lambda: self._health_index(name), query)

    async def _status_leader(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(f"{_SERVER_ADDRESS}:8300")

    async def _agent_register(self, request: web.Request) -> web.StreamResponse:
        self._check_tenancy(request)
        try:
            body = _ci(await request.json())
        except json.JSONDecodeError as exc:
            raise _ApiError(400, f"Request decode failed: {exc}") from None
        name = body.get("name")
        if not name or not isinstance(name, str):
            raise _ApiError(400, "Invalid Service Meta: Missing service name")
        self._authorize(request, write=name)
        port = body.get("port") or 0
        if not isinstance(port, int):
            raise _ApiError(400, "Request decode failed: Port must be a number")
        weights = _ci(body.get("weights") or {"Passing": 1, "Warning": 1})
        passing_weight = weights.get("passing", 1)
        if not isinstance(passing_weight, int) or passing_weight < 1:
            raise _ApiError(400, "Invalid Weights: Passing must be greater than 0")
        checks = list(body.get("checks") or [])
        if body.get("check"):
            checks.insert(0, body["check"])
        status: str | None = None
        if checks:
            # A new check starts critical unless its definition gives a Status.
            statuses = [_ci(c).get("status") or "critical" for c in checks]
            status = max(statuses, key=lambda s: _STATUSES.index(s) if s in _STATUSES else 2)
        self._register(
            _Instance(
                id=body.get("id") or name,
                name=name,
                node=_AGENT_NODE,
                address=body.get("address") or "",
                port=port,
                tags=[str(t) for t in body.get("tags") or []],
                meta={str(k): str(v) for k, v in (body.get("meta") or {}).items()},
                weights={"Passing": passing_weight, "Warning": int(weights.get("warning", 1))},
                status=status,
            ),
            "127.0.0.1",
        )
        return web.Response(status=200)

    async def _agent_deregister(self, request: web.Request) -> web.StreamResponse:
        service_id = request.match_info["id"]
        self._check_tenancy(request)
        instance = self._instances.get(service_id)
        self._authorize(request, write=instance.name if instance else service_id)
        if instance is None or instance.node != _AGENT_NODE:
            raise _ApiError(
                404,
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                "not the service name.",
            )
        self.deregister(service_id)
        return web.Response(status=200)
