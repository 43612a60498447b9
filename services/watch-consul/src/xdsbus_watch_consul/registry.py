"""`ConsulRegistry`: one McpBridge registry of type `consul`, watched with py-consul's asyncio client.

What it does, after Higress's `registry/consul/watcher.go` (docs/higress.md §2, docs/registries.md §2.5):

* The service list comes from `/v1/catalog/services`, optionally only services one of whose tags equals
  `consulServiceTag` (compared lower-case). Higress re-lists every `consulRefreshInterval` (default 30 s,
  at least 10 s); this watcher makes the same request a blocking query whose `wait` is that interval, so
  it still asks at least that often but also sees a new or removed service at once.
* Each listed service has its own blocking query on `/v1/health/service/<name>` (without `passing`, as
  Higress's `watch.Plan`), and keeps only the instances whose aggregated check status is `passing`. If
  none pass, the service is left as it was last published (Higress does not update or delete it then).
* The published service is `<service>.<datacenter>.consul` (`_` made `-`); its port and protocol are the
  first passing instance's (`Service.Meta["protocol"]`, default HTTP), each endpoint keeps its own port,
  its weight is `Weights.Passing`, its address `Service.Address` or else the node's address, its
  metadata `Service.Meta`.
* A service that leaves the catalog (or stops carrying the tag) is deleted.

Blocking-query rules (docs/registries.md §2.2, Consul's blocking-query docs): an index lower than the previous
one resets to 0 (snapshot restore), an index below 1 is raised to 1 before blocking, "same index" means
nothing changed, and the HTTP deadline exceeds `wait + wait/16` (Consul's jitter). An answer with a new
index is a change: it is published and the query re-issued at once, so successive changes of one service
reach the event log at the speed of the protocol (issue 14). Only answers that bring nothing new (same
index, an index reset, garbage) spend a token of the loop's bucket (burst 2, then one per 15 s): a server
that answers at once without a change degrades to polling rather than a busy loop, while an expired wait
has paced itself already.

Failures (unreachable agent, 5xx, a refused token) make `run` raise `ConsulError`; the registry machinery
keeps what was published, backs off and calls `run` again, whose resync then catches up. Garbage from
the agent (a body that is not the JSON it should be, a malformed instance) goes to `sink.problem` and
is skipped; the rest keeps being served.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import consul
import consul.aio

from xdsbus.contract.hostnames import higress_hostname
from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryEndpoint, RegistryService
from xdsbus.registry.api import Credentials, Registry, RegistrySink

log = logging.getLogger(__name__)

DEFAULT_REFRESH_INTERVAL = 30.0  # Higress DefaultRefreshInterval
MIN_REFRESH_INTERVAL = 10.0  # Higress DefaultRefreshIntervalLimit
DEFAULT_HEALTH_WAIT = 300.0  # Consul's default blocking wait, which Higress's watch.Plan uses
DEFAULT_CHURN_INTERVAL = 15.0  # token bucket refill: Consul's docs suggest polling about every 15 s
DEFAULT_BURST = 2  # ... after a burst of 2 quick successive requests
INITIAL_CONCURRENCY = 32  # parallel health queries while building the first resync
TOKEN_KEY = "consulToken"  # the authSecretName key Higress reads the ACL token from
PROTOCOLS = {"http": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "https": "HTTPS", "grpcs": "GRPCS"}

# Consul's health status names and Go's `api.HealthChecks.AggregatedStatus` precedence.
PASSING, WARNING, CRITICAL, MAINTENANCE = "passing", "warning", "critical", "maintenance"
_NODE_MAINT = "_node_maintenance"
_SERVICE_MAINT_PREFIX = "_service_maintenance:"
# Service names become hostname labels: anything else is reported and skipped.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class ConsulError(Exception):
    """The Consul agent could not be used: unreachable, failing, or refusing the token."""


class _Garbage(Exception):
    """An answer that is not what the endpoint returns: reported, skipped, asked again."""


class _Malformed(Exception):
    """One malformed health entry."""


# --------------------------------------------------------------------------------------------------------
# Pure helpers


def next_index(previous: int, returned: int) -> int:
    """The index of the next blocking request after an answer carrying `returned`.

    A lower index than before means the server's state was replaced (snapshot restore, upgrade): start
    over from 0, which asks once without blocking. Otherwise the index must be at least 1, since index 0
    does not block and would turn the loop into polling."""
    if returned < previous:
        return 0
    return max(returned, 1)


def aggregated_status(checks: Any) -> str:
    """Go's `api.HealthChecks.AggregatedStatus`: maintenance, then critical, warning, passing; a check in
    an unknown status makes the whole unknown (""). No checks at all is passing."""
    if checks is None:
        return PASSING
    if not isinstance(checks, list):
        raise _Malformed("Checks is not a list")
    seen: set[str] = set()
    for check in checks:
        if not isinstance(check, Mapping):
            raise _Malformed("a check is not an object")
        check_id = check.get("CheckID")
        if isinstance(check_id, str) and (
            check_id == _NODE_MAINT or check_id.startswith(_SERVICE_MAINT_PREFIX)
        ):
            seen.add(MAINTENANCE)
            continue
        status = check.get("Status")
        if status not in (PASSING, WARNING, CRITICAL):
            return ""
        seen.add(status)
    for status in (MAINTENANCE, CRITICAL, WARNING):
        if status in seen:
            return status
    return PASSING


def parse_protocol(value: str) -> str | None:
    """The xdsbus protocol for a `protocol` metadata value (any case), None if unsupported."""
    return PROTOCOLS.get(value.strip().lower())


@dataclass(frozen=True, slots=True)
class _Instance:
    id: str
    endpoint: RegistryEndpoint
    protocol: str  # already checked


def _string_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}  # Consul encodes an empty map as null
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _Malformed(f"{what} is not a map of strings")
    return dict(value)


def parse_entry(entry: Any) -> tuple[str, str, _Instance | None, list[str]]:
    """One `/v1/health/service` entry: (instance id, aggregated status, the instance or None when it is
    not passing, notes that do not disqualify it). Raises `_Malformed`."""
    if not isinstance(entry, Mapping):
        raise _Malformed("entry is not an object")
    service = entry.get("Service")
    if not isinstance(service, Mapping):
        raise _Malformed("entry has no Service object")
    instance_id = service.get("ID")
    if not isinstance(instance_id, str) or not instance_id:
        raise _Malformed("Service.ID is missing")
    status = aggregated_status(entry.get("Checks"))
    if status != PASSING:
        return instance_id, status, None, []
    node = entry.get("Node")
    if node is not None and not isinstance(node, Mapping):
        raise _Malformed("Node is not an object")
    address = service.get("Address")
    if address is not None and not isinstance(address, str):
        raise _Malformed("Service.Address is not a string")
    if not address:
        # An empty service address means "the node's address" (Consul's DNS and catalog do the same).
        address = node.get("Address") if node else None
        if not isinstance(address, str) or not address:
            raise _Malformed("neither Service.Address nor Node.Address is set")
    port = service.get("Port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise _Malformed(f"Service.Port {port!r} is not a port number")
    weights = service.get("Weights")
    weight = 1
    if weights is not None:
        if not isinstance(weights, Mapping):
            raise _Malformed("Service.Weights is not an object")
        weight = weights.get("Passing", 1)
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 1:
            raise _Malformed(f"Service.Weights.Passing {weight!r} is not a positive integer")
    meta = _string_map(service.get("Meta"), "Service.Meta")
    notes: list[str] = []
    protocol = "HTTP"
    if meta.get("protocol"):
        parsed = parse_protocol(meta["protocol"])
        if parsed is None:
            supported = ", ".join(PROTOCOLS.values())
            notes.append(f"protocol {meta['protocol']!r} is not one of {supported}; HTTP used")
        else:
            protocol = parsed
    zone = ""
    locality = service.get("Locality")
    if isinstance(locality, Mapping) and isinstance(locality.get("Zone"), str):
        zone = locality["Zone"]
    endpoint = RegistryEndpoint(address=address, port=port, weight=weight, zone=zone, metadata=meta)
    return instance_id, status, _Instance(instance_id, endpoint, protocol), notes


def _endpoint_key(e: RegistryEndpoint) -> tuple[Any, ...]:
    return (e.address, e.port, e.weight, e.zone, sorted(e.metadata.items()))


# --------------------------------------------------------------------------------------------------------
# Rate limiting


class TokenBucket:
    """Allows `burst` requests at once, then one per `interval` seconds: taken after each answer that
    brought nothing new, so a server answering at once with the same index is polled, not hammered."""

    def __init__(self, burst: int, interval: float) -> None:
        self.burst = burst
        self.interval = interval
        self._tokens = float(burst)
        self._stamp = time.monotonic()

    async def take(self) -> None:
        """Take a token, waiting for one if the bucket is empty."""
        now = time.monotonic()
        if self.interval > 0:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) / self.interval)
        else:
            self._tokens = float(self.burst)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return
        delay = (1 - self._tokens) * self.interval
        # Waiting is the point here: the delay is the rate limit, not a synchronisation.
        await asyncio.sleep(delay)
        self._tokens = 0.0
        self._stamp = time.monotonic()


# --------------------------------------------------------------------------------------------------------
# The registry


def _go_duration(seconds: float) -> str:
    """A Consul `wait` value ("300000ms"): milliseconds keep sub-second test waits exact."""
    return f"{max(1, math.ceil(seconds * 1000))}ms"


def _short(text: Any, limit: int = 200) -> str:
    text = str(text)
    return text if len(text) <= limit else text[:limit] + "..."


class ConsulRegistry(Registry):
    """A running watch of one Consul agent (one McpBridge registry of type `consul`).

    The keyword arguments exist for tests; the defaults are the production behaviour. What was last
    published per service survives a failed `run`, so a service with no passing instance keeps its last
    endpoints across reconnects too.
    """

    def __init__(
        self,
        config: RegistryConfig,
        credentials: Credentials,
        *,
        refresh_interval: float | None = None,
        health_wait: float = DEFAULT_HEALTH_WAIT,
        churn_interval: float = DEFAULT_CHURN_INTERVAL,
        burst: int = DEFAULT_BURST,
    ) -> None:
        super().__init__(config, credentials)
        if refresh_interval is None:
            refresh_interval = config.consul_refresh_interval / 1e9 or DEFAULT_REFRESH_INTERVAL
            refresh_interval = max(refresh_interval, MIN_REFRESH_INTERVAL)
        self.refresh_interval = refresh_interval
        self.health_wait = health_wait
        self.churn_interval = churn_interval
        self.burst = burst
        self.datacenter = config.consul_datacenter
        self.service_tag = config.consul_service_tag.strip().lower()
        domain = config.domain.strip()
        self.scheme = "http"
        for scheme in ("http", "https"):
            if domain.startswith(f"{scheme}://"):
                self.scheme, domain = scheme, domain[len(scheme) + 3 :]
        self.host = domain.rstrip("/")
        self.port = config.port or 8500
        self.url = f"{self.scheme}://{self.host}:{self.port}"
        # service name -> what was last published for it; read by the next resync.
        self.published: dict[str, RegistryService] = {}

    def hostname(self, service: str) -> str:
        """`<service>.<datacenter>.consul` (`<service>..consul` without a datacenter, as Higress)."""
        return higress_hostname(service, self.datacenter, "consul")

    def _token(self, sink: RegistrySink) -> str | None:
        secret = self.config.auth_secret_name
        if not secret:
            return None
        token = self.credentials.get(secret, TOKEN_KEY)
        if token is None:
            sink.problem(f"secret {secret}", f"has no key {TOKEN_KEY}; connecting without an ACL token")
        return token or None

    def _client(self) -> consul.aio.Consul:
        # The session-wide aiohttp timeout must outlast the longest blocking query (aiohttp's default
        # total of 300 s does not); each call also gets its own, tighter deadline. One connection per
        # blocked query: the pool must hold one per watched service.
        longest = max(self.health_wait, self.refresh_interval)
        with warnings.catch_warnings():
            # py-consul 1.8 passes aiohttp's deprecated `verify_ssl`/`ssl_context`: harmless noise.
            warnings.simplefilter("ignore", DeprecationWarning)
            return consul.aio.Consul(
                host=self.host,
                port=self.port,
                scheme=self.scheme,
                verify=True,
                connections_limit=100_000,
                connections_timeout=longest * 17 / 16 + 60,
            )

    async def run(self, sink: RegistrySink) -> None:
        """Resync what the agent holds, then follow it until cancelled; raise `ConsulError` on failure."""
        if not self.host:
            raise ConsulError(f"registry {self.config.key} has no domain")
        token = self._token(sink)
        client = self._client()
        try:
            await _Session(self, client, sink, token).run()
        finally:
            await client.close()


class _Session:
    """One `run`: the connection, the watch tasks, and what they share."""

    def __init__(
        self, registry: ConsulRegistry, client: consul.aio.Consul, sink: RegistrySink, token: str | None
    ) -> None:
        self.registry = registry
        self.client = client
        self.sink = sink
        self.token = token
        self.watches: dict[str, asyncio.Task[None]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.failed: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()
        # One sink call at a time, so a delete can never overtake an upsert of the same service.
        self.lock = asyncio.Lock()

    # ---- requests

    async def _call(
        self, what: str, wait: float | None, call: Callable[[], Awaitable[Any]]
    ) -> tuple[int, Any]:
        """Make one request; `(index, data)`. Garbage raises `_Garbage`, anything else `ConsulError`."""
        reg = self.registry
        deadline = (wait * 17 / 16 + 10) if wait else 30.0
        try:
            async with asyncio.timeout(deadline):
                index_text, data = await call()
        except consul.ACLPermissionDenied as exc:
            if self.token:
                hint = f"the token from Secret {reg.config.auth_secret_name} ({TOKEN_KEY}) was refused"
            else:
                hint = "no ACL token is configured (authSecretName with key consulToken)"
            raise ConsulError(f"consul {reg.url} denied {what} (403 {_short(exc)}): {hint}") from exc
        except consul.ACLDisabled as exc:
            raise ConsulError(f"consul {reg.url} refused {what} (401 {_short(exc)})") from exc
        except consul.ConsulException as exc:
            text = str(exc)
            if text.startswith(("Failed to decode JSON", "Missing index header")):
                raise _Garbage(_short(text)) from exc
            raise ConsulError(f"consul {reg.url}: {what} failed: {_short(text)}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise ConsulError(f"consul {reg.url} unreachable ({what}): {exc!r}") from exc
        self.sink.answered()
        try:
            index = int(index_text)
        except (TypeError, ValueError):
            raise _Garbage(f"X-Consul-Index {index_text!r} is not a number") from None
        return index, data

    def _params(self, index: int, wait: float) -> dict[str, Any]:
        params: dict[str, Any] = {"token": self.token}
        if self.registry.datacenter:
            params["dc"] = self.registry.datacenter
        if index > 0:
            params["index"] = index
            params["wait"] = _go_duration(wait)
        return params

    async def _catalog(self, index: int) -> tuple[int, dict[str, Any]]:
        wait = self.registry.refresh_interval
        params = self._params(index, wait)
        returned, data = await self._call(
            "listing services", wait if index else None, lambda: self.client.catalog.services(**params)
        )
        if not isinstance(data, dict):
            raise _Garbage(f"/v1/catalog/services answered {_short(data)!r}, not an object")
        return returned, data

    async def _health(self, name: str, index: int) -> tuple[int, Any]:
        wait = self.registry.health_wait
        params = self._params(index, wait)
        return await self._call(
            f"health of {name}", wait if index else None, lambda: self.client.health.service(name, **params)
        )

    # ---- content

    def _select(self, catalog: Mapping[str, Any]) -> list[str]:
        """The catalog's services this registry publishes, sorted; malformed entries are reported."""
        tag = self.registry.service_tag
        chosen: dict[str, str] = {}  # hostname -> service, to catch two names with one hostname
        for name in sorted(catalog):
            if not isinstance(name, str) or not _SERVICE_NAME.match(name):
                self.sink.problem(f"service {name!r}", "is not usable as a hostname label; skipped")
                continue
            tags = catalog[name]
            if tag:
                if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                    self.sink.problem(f"service {name}", "catalog tags are not a list of strings")
                    if name not in self.watches:
                        continue  # keep what we had: in if already watched, out if new
                elif tag not in (t.lower() for t in tags):
                    continue
            host = self.registry.hostname(name)
            if host in chosen:
                self.sink.problem(
                    f"service {name}", f"has the same hostname {host} as {chosen[host]}; skipped"
                )
                continue
            chosen[host] = name
        return sorted(chosen.values())

    def _build(self, name: str, entries: Any) -> RegistryService | None:
        """The service from its health entries; None if no instance passes (or the answer is garbage)."""
        if not isinstance(entries, list):
            self.sink.problem(f"service {name}", f"health answer is not a list: {_short(entries)!r}")
            return None
        instances: list[_Instance] = []
        for i, entry in enumerate(entries):
            try:
                instance_id, _status, instance, notes = parse_entry(entry)
            except _Malformed as exc:
                service = entry.get("Service") if isinstance(entry, Mapping) else None
                ident = service.get("ID") if isinstance(service, Mapping) else None
                ident = ident if isinstance(ident, str) and ident else f"entry {i}"
                self.sink.problem(f"service {name} instance {ident}", f"{exc}; skipped")
                continue
            for note in notes:
                self.sink.problem(f"service {name} instance {instance_id}", note)
            if instance is not None:
                instances.append(instance)
        if not instances:
            return None
        first = instances[0]  # Higress: the service port and protocol are the first instance's
        reg = self.registry
        return RegistryService(
            hostname=reg.hostname(name),
            registry_type=reg.config.type,
            registry=reg.config.name,
            service=name,
            port=first.endpoint.port,
            protocol=first.protocol,
            endpoints=sorted((i.endpoint for i in instances), key=_endpoint_key),
        )

    # ---- tasks

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and not self.failed.done():
            self.failed.set_result(exc)

    async def run(self) -> None:
        try:
            await self._start()
            exc = await self.failed
            raise exc
        finally:
            for task in list(self.tasks):
                task.cancel()
            await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _start(self) -> None:
        """The first full picture: catalog, every service's health, one resync; then the watches."""
        try:
            catalog_index, catalog = await self._catalog(0)
        except _Garbage as exc:
            self.sink.problem("catalog", str(exc))
            raise ConsulError(
                f"consul {self.registry.url}: the service catalog is unreadable: {exc}"
            ) from exc
        names = self._select(catalog)
        limit = asyncio.Semaphore(INITIAL_CONCURRENCY)

        async def first(name: str) -> tuple[int, RegistryService | None]:
            async with limit:
                try:
                    index, entries = await self._health(name, 0)
                except _Garbage as exc:
                    self.sink.problem(f"service {name}", str(exc))
                    return 0, None
                return next_index(0, index), self._build(name, entries)

        fetches = [asyncio.ensure_future(first(name)) for name in names]
        try:
            results = await asyncio.gather(*fetches)
        except BaseException:
            # gather leaves the other fetches running; they must not outlive the client.
            for fetch in fetches:
                fetch.cancel()
            await asyncio.gather(*fetches, return_exceptions=True)
            raise
        published = self.registry.published
        services: dict[str, RegistryService] = {}
        for name, (_index, built) in zip(names, results, strict=True):
            # A service with no passing instance keeps what was published before (Higress).
            service = built or published.get(name)
            if service is not None:
                services[name] = service
        await self.sink.resync(list(services.values()))
        self.registry.published = services
        log.info(
            "consul %s: resynced %d services (%d listed%s)",
            self.registry.url,
            len(services),
            len(names),
            f", tag {self.registry.service_tag!r}" if self.registry.service_tag else "",
        )
        for name, (index, _built) in zip(names, results, strict=True):
            self.watches[name] = self._spawn(self._watch(name, index), f"consul health {name}")
        self._spawn(self._watch_catalog(catalog_index), "consul catalog")

    async def _watch_catalog(self, index: int) -> None:
        bucket = TokenBucket(self.registry.burst, self.registry.churn_interval)
        while True:
            try:
                returned, catalog = await self._catalog(index)
            except _Garbage as exc:
                self.sink.problem("catalog", str(exc))
                await bucket.take()  # same index: asked again once the bucket allows
                continue
            previous, index = index, next_index(index, returned)
            if returned <= previous:
                await bucket.take()  # the wait expired (nothing changed), or the index went back
                if returned == previous:
                    continue
            await self._reconcile(self._select(catalog))

    async def _reconcile(self, names: Iterable[str]) -> None:
        wanted = set(names)
        for name in sorted(set(self.watches) - wanted):
            task = self.watches.pop(name)
            task.cancel()
            await asyncio.wait([task])
            async with self.lock:
                if self.registry.published.pop(name, None) is not None:
                    log.info("consul %s: service %s is gone", self.registry.url, name)
                    await self.sink.delete(self.registry.hostname(name))
        for name in sorted(wanted - set(self.watches)):
            self.watches[name] = self._spawn(self._watch(name, 0), f"consul health {name}")

    async def _watch(self, name: str, index: int) -> None:
        bucket = TokenBucket(self.registry.burst, self.registry.churn_interval)
        while True:
            try:
                returned, entries = await self._health(name, index)
            except _Garbage as exc:
                self.sink.problem(f"service {name}", str(exc))
                await bucket.take()
                continue
            previous, index = index, next_index(index, returned)
            if returned <= previous:
                await bucket.take()  # the wait expired (nothing changed), or the index went back
                if returned == previous:
                    continue
            await self._apply(name, self._build(name, entries))

    async def _apply(self, name: str, service: RegistryService | None) -> None:
        published = self.registry.published
        if service is None:
            if name in published:
                log.info(
                    "consul %s: no passing instance of %s; keeping the last ones", self.registry.url, name
                )
            return
        if published.get(name) == service:
            return
        async with self.lock:
            # Recorded first: if this task is cancelled mid-upsert (the service left the catalog) the
            # event may still have been stored, and `_reconcile` must then publish the delete.
            published[name] = service
            await self.sink.upsert(service)
