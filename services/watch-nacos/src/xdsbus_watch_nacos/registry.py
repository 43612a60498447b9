"""`NacosRegistry`: one McpBridge registry of type nacos/nacos2/nacos3, watched over Nacos' gRPC API.

As Higress' nacos v2 watcher: per configured group, list the services (paged) every refresh interval to
find added and removed ones (the Python SDK has no service-set push), subscribe to each service for
instance pushes, and publish each service under its Higress hostname. Differences, and why:

* A lost or replaced connection ends `run` with `NacosUnavailable` (the machinery keeps what was
  published, backs off and calls `run` again, which resyncs). The SDK would reconnect by itself, but it
  re-subscribes only on a 30 s timer, so pushes in between would be lost.
* A service with no usable instance is not published; one that loses its last instance is deleted (Higress
  deletes the entry on "hosts is empty" too). This keeps a resync after a restart equal to what live
  updates produced.
* Services are listed in `nacosNamespaceId` (Higress lists in `nacosNamespace`, which only differs when
  both are set and then lists a namespace named by the display name); `nacosNamespace` names the hosts.
* Type `nacos` (Nacos 1.x, HTTP-only in Higress) is served over gRPC like nacos2/nacos3: Nacos 1.x servers
  are not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryService
from xdsbus.registry.api import Credentials, Registry, RegistrySink
from xdsbus_watch_nacos.client import (
    DEFAULT_PORT,
    HTTP_TIMEOUT_MS,
    ClientSettings,
    NacosClient,
    NacosUnavailable,
    probe,
)
from xdsbus_watch_nacos.convert import Problem, build_service, higress_nacos_hostname

log = logging.getLogger("xdsbus_watch_nacos")

NACOS_TYPES = frozenset({"nacos", "nacos2", "nacos3"})
DEFAULT_NAMESPACE_ID = "public"
# nacosRefreshInterval (nanoseconds in the CRD): Higress' default and floor, in seconds.
DEFAULT_REFRESH_INTERVAL = 30.0
MIN_REFRESH_INTERVAL = 10.0
# How often the connection is checked; a drop is noticed within this.
HEALTH_INTERVAL = 0.5
# Subscriptions in flight at once (each is one round trip).
SUBSCRIBE_CONCURRENCY = 16
USERNAME_KEY = "nacosUsername"
PASSWORD_KEY = "nacosPassword"

ServiceKey = tuple[str, str]  # (group, service)


class NacosConfigError(ValueError):
    """The registry entry or its credentials cannot be used as they are."""


def refresh_interval(config: RegistryConfig) -> float:
    """`nacosRefreshInterval` in seconds: 30 s when unset, never below 10 s (as Higress)."""
    if config.nacos_refresh_interval <= 0:
        return DEFAULT_REFRESH_INTERVAL
    return max(config.nacos_refresh_interval / 1e9, MIN_REFRESH_INTERVAL)


def should_watch(service: str) -> bool:
    """Higress' shouldSubscribe: not empty, not a Dubbo consumer registration."""
    return bool(service) and not service.startswith("consumers:")


async def discover_servers(address_server: str, namespace: str, port: int) -> list[str]:
    """Ask a Nacos address server for the server IPs, as Higress' NacosAddressProvider does:
    `GET <addressServer>/nacos/serverlist?namespace=<ns>` with `Request-Module: Naming`, one IP per
    whitespace-separated word; each is served on the registry's `port`."""
    url = address_server if "://" in address_server else f"http://{address_server}"
    url = url.rstrip("/") + "/nacos/serverlist"
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_MS / 1000)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url, params={"namespace": namespace}, headers={"Request-Module": "Naming"}) as resp,
        ):
            if resp.status != 200:
                raise NacosUnavailable(f"address server {url}: HTTP {resp.status}")
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise NacosUnavailable(f"address server {url}: {exc or type(exc).__name__}") from exc
    addresses = text.split()
    if not addresses:
        raise NacosUnavailable(f"address server {url} listed no Nacos server")
    if any(":" in a for a in addresses):
        raise NacosConfigError(
            f"address server {url} listed IPv6 addresses, which the Nacos client cannot use"
        )
    random.shuffle(addresses)  # spread watchers over the servers, as Higress picks one at random
    return [f"{a}:{port}" for a in addresses]


@dataclass(slots=True)
class _Subscription:
    hostname: str
    callback: Callable[[list[Any]], Awaitable[None]]
    instances: list[Any] | None = None  # None until the first callback
    problems: frozenset[Problem] = field(default_factory=frozenset)


class NacosRegistry(Registry):
    """Watches one Nacos namespace (its configured groups) and reports its services to a sink."""

    def __init__(self, config: RegistryConfig, credentials: Credentials) -> None:
        super().__init__(config, credentials)
        self.namespace_id = config.nacos_namespace_id or DEFAULT_NAMESPACE_ID
        self.namespace = config.nacos_namespace or self.namespace_id
        # Higress loops over the configured groups: none configured means nothing is discovered.
        self.groups = list(dict.fromkeys(config.nacos_groups))
        self.refresh_interval = refresh_interval(config)

    def servers(self) -> list[str]:
        """`domain:port` of the entry (port 8848 when unset), as the client's server list."""
        host = self.config.domain.strip()
        if not host:
            raise NacosConfigError(f"registry {self.config.key}: no domain")
        if ":" in host:
            # The client splits server addresses on ':' (ip:port), so an IPv6 literal cannot work.
            raise NacosConfigError(f"registry {self.config.key}: IPv6 domain {host!r}: use a host name")
        return [f"{host}:{self.config.port or DEFAULT_PORT}"]

    async def client_settings(self) -> ClientSettings:
        """Where and how to connect: the address server or domain:port, credentials from the Secret."""
        if self.config.nacos_address_server:
            servers = await discover_servers(
                self.config.nacos_address_server, self.namespace, self.config.port or DEFAULT_PORT
            )
        else:
            servers = self.servers()
        username = password = None
        if secret := self.config.auth_secret_name:
            username = self.credentials.get(secret, USERNAME_KEY)
            password = self.credentials.get(secret, PASSWORD_KEY)
            if not username or not password:
                # Raising lets the machinery retry: the Secret may simply not be there yet.
                raise NacosConfigError(
                    f"registry {self.config.key}: Secret {secret!r} lacks {USERNAME_KEY}/{PASSWORD_KEY}"
                )
        return ClientSettings(
            servers=tuple(servers),
            namespace_id=self.namespace_id,
            username=username,
            password=password,
            access_key=self.config.nacos_access_key or None,
            secret_key=self.config.nacos_secret_key or None,
        )

    async def run(self, sink: RegistrySink) -> None:
        settings = await self.client_settings()
        client = await NacosClient.connect(settings)
        try:
            await _Watch(self, client, sink, settings.servers).run()
        finally:
            await client.close()


class _Watch:
    """One connection's worth of watching: initial list + subscribe + resync, then changes."""

    def __init__(
        self, registry: NacosRegistry, client: NacosClient, sink: RegistrySink, servers: Sequence[str]
    ) -> None:
        self.registry = registry
        self.servers = servers
        self.config = registry.config
        self.client = client
        self.sink = sink
        self.subs: dict[ServiceKey, _Subscription] = {}
        self.published: dict[str, RegistryService] = {}
        self.dirty: set[ServiceKey] = set()
        # Services left out because another one has their hostname, with the problem reported for each.
        self.collisions: dict[ServiceKey, Problem] = {}
        # A reported problem went away: resync (after re-reporting the standing ones) to clear it.
        self.problems_gone = False
        self.wake = asyncio.Event()

    async def run(self) -> None:
        await self.sync_services()
        # Everything subscribed has delivered its instances through the callbacks by now.
        services: list[RegistryService] = []
        for key in sorted(self.subs):
            service = self.evaluate(key)
            if service is not None:
                services.append(service)
                self.published[service.hostname] = service
        self.dirty.clear()
        self.problems_gone = False
        await self.sink.resync(services)
        log.info(
            "nacos registry %s: %d services published from %d listed",
            self.config.key,
            len(services),
            len(self.subs),
        )
        await _first_failure(self.poll(), self.publish(), self.watch_connection())

    # -------------------------------------------------------------- listing and subscribing

    async def sync_services(self) -> None:
        """List every group; subscribe to new services, unsubscribe from vanished ones."""
        listed: set[ServiceKey] = set()
        for group in self.registry.groups:
            names = await self.client.list_services(group, self.registry.namespace_id)
            self.sink.answered()
            listed.update((group, name) for name in names if should_watch(name))
        for key in sorted(self.subs.keys() - listed):
            sub = self.subs.pop(key)
            with contextlib.suppress(Exception):  # the subscription dies with the connection anyway
                await self.client.unsubscribe(key[0], key[1], sub.callback)
            self.problems_gone |= bool(sub.problems)
            self.mark(key)
        claimed = {sub.hostname: key for key, sub in self.subs.items()}
        new: list[ServiceKey] = []
        for key in sorted(listed - self.subs.keys()):
            hostname = higress_nacos_hostname(key[1], key[0], self.registry.namespace)
            if (other := claimed.get(hostname)) is not None:
                # `_` -> `-` folds group A_B onto A-B; the first one listed keeps the host.
                if key not in self.collisions:
                    problem = Problem(
                        f"{key[0]}/{key[1]}", f"hostname {hostname} already used by {other[0]}/{other[1]}"
                    )
                    self.collisions[key] = problem
                    self.sink.problem(problem.what, problem.reason)
                continue
            claimed[hostname] = key
            new.append(key)
            self.subs[key] = _Subscription(hostname=hostname, callback=self.callback(key))
        for key in [k for k in self.collisions if k not in listed or k in self.subs]:
            del self.collisions[key]
            self.problems_gone = True
            self.wake.set()
        semaphore = asyncio.Semaphore(SUBSCRIBE_CONCURRENCY)

        async def subscribe(key: ServiceKey) -> None:
            async with semaphore:
                sub = self.subs[key]
                hosts = await self.client.subscribe(key[0], key[1], sub.callback)
                if sub.instances is None:
                    # No callback: the SDK still had this service cached from an earlier subscription
                    # with the same instances, so it saw no change. Its cache is the current state.
                    sub.instances = hosts
                    self.mark(key)

        await _first_failure(*(subscribe(key) for key in new))

    def callback(self, key: ServiceKey) -> Callable[[list[Any]], Awaitable[None]]:
        """The SDK passes instances only, not the service: one closure per service. It runs inside the
        SDK's push handler, so it only records and wakes the publisher."""

        async def on_instances(instances: list[Any]) -> None:
            self.sink.answered()
            sub = self.subs.get(key)
            if sub is not None and sub.callback is on_instances:
                sub.instances = list(instances or [])
                self.mark(key)

        return on_instances

    def mark(self, key: ServiceKey) -> None:
        self.dirty.add(key)
        self.wake.set()

    # -------------------------------------------------------------- evaluating and publishing

    def evaluate(self, key: ServiceKey) -> RegistryService | None:
        """The service as it should be published now (None: not at all); reports new problems."""
        sub = self.subs.get(key)
        if sub is None:
            return None
        service, problems = build_service(
            self.config, key[0], key[1], self.registry.namespace, sub.instances or []
        )
        current = frozenset(problems)
        for problem in sorted(current - sub.problems, key=lambda p: (p.what, p.reason)):
            self.sink.problem(problem.what, problem.reason)
        self.problems_gone |= bool(sub.problems - current)
        sub.problems = current
        return service

    def standing_problems(self) -> list[Problem]:
        problems = [p for sub in self.subs.values() for p in sub.problems] + list(self.collisions.values())
        return sorted(problems, key=lambda p: (p.what, p.reason))

    async def publish(self) -> None:
        """The only writer after the resync: drains changed services, upserts or deletes them."""
        while True:
            await self.wake.wait()
            self.wake.clear()
            keys, self.dirty = sorted(self.dirty), set()
            for key in keys:
                hostname = higress_nacos_hostname(key[1], key[0], self.registry.namespace)
                service = self.evaluate(key)
                if service is None:
                    if self.published.pop(hostname, None) is not None:
                        await self.sink.delete(hostname)
                elif self.published.get(hostname) != service:
                    self.published[hostname] = service
                    await self.sink.upsert(service)
            if self.problems_gone:
                # The registry status keeps a problem until a resync no longer reports it (problems are
                # otherwise reported once, when they appear); a resync of unchanged services publishes
                # only its begin and end markers.
                self.problems_gone = False
                for problem in self.standing_problems():
                    self.sink.problem(problem.what, problem.reason)
                await self.sink.resync([self.published[h] for h in sorted(self.published)])

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(self.registry.refresh_interval)
            await self.sync_services()

    async def watch_connection(self) -> None:
        while True:
            await asyncio.sleep(HEALTH_INTERVAL)
            if not self.client.healthy():
                reason = f"lost the connection to Nacos (registry {self.config.key})"
                try:
                    await probe(self.servers)
                except NacosUnavailable as exc:
                    # The server is down, not just the connection: chained to the refusal, so that the
                    # machinery tries again within a second rather than after a growing backoff step.
                    raise NacosUnavailable(f"{reason}; {exc}") from exc
                raise NacosUnavailable(reason)


async def _first_failure(*coros: Awaitable[None]) -> None:
    """Run the loops together; the first one to fail cancels the others and its exception is raised as is
    (not wrapped in an ExceptionGroup, which the machinery would only log less clearly)."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            if (exc := task.exception()) is not None:
                raise exc
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
