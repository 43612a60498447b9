"""`EurekaRegistry`: one McpBridge `eureka` registry, polled the way Eureka's own DiscoveryClient does.

At start a full `GET <prefix>/apps` fills a local copy and is published as a resync. Then every poll
interval `GET <prefix>/apps/delta` (the changes of the server's last 3 minutes) is applied to the copy:
ADDED/MODIFIED replace the instance, DELETED removes it (an application without instances goes away). The
copy's reconcile hashcode (status counts, `DOWN_1_UP_2_`) must then equal the delta's `apps__hashcode`,
which the server computes over its whole registry; when it does not (changes older than the window were
missed, the delta was refused, a reply was garbled) the copy is thrown away and a full fetch is published
as a resync. Otherwise each service that changed is upserted and each that vanished is deleted.

The REST protocol is spoken directly with aiohttp (JSON requested, XML accepted) rather than through
py-eureka-client, whose poller runs on a thread with its own event loop and reads XML only (README).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import Counter
from typing import Any

import aiohttp

from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryService
from xdsbus.registry.api import Credentials, Registry, RegistrySink
from xdsbus_watch_eureka.codec import (
    ADDED,
    DELETED,
    MODIFIED,
    Document,
    DocumentError,
    EurekaInstance,
    parse_document,
    reconcile_hashcode,
)
from xdsbus_watch_eureka.services import build_services

log = logging.getLogger("xdsbus_watch_eureka")

# Eureka clients fetch the delta every 30 s (registryFetchIntervalSeconds); so does Higress' full poll.
DEFAULT_POLL_INTERVAL = 30.0
# McpBridge has no field for it, so the environment may set it (tests shorten it).
POLL_INTERVAL_ENV = "XDSBUS_EUREKA_POLL_INTERVAL"
# Eureka's conventional port, for a registry entry without `port`.
DEFAULT_PORT = 8761
# Spring Cloud's server serves under /eureka, Netflix's standalone one under /eureka/v2; the first that
# answers /apps is kept for the run.
PREFIXES = ("/eureka", "/eureka/v2")
REQUEST_TIMEOUT = 10.0


class EurekaError(RuntimeError):
    """The registry cannot be read (unreachable, an error status, not a registry): `run` fails with it."""


def poll_interval_from_env() -> float:
    """The poll interval: XDSBUS_EUREKA_POLL_INTERVAL seconds, else 30."""
    raw = os.environ.get(POLL_INTERVAL_ENV, "")
    if not raw:
        return DEFAULT_POLL_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"{POLL_INTERVAL_ENV}={raw!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{POLL_INTERVAL_ENV}={raw!r} must be positive")
    return value


def base_url(config: RegistryConfig) -> str:
    """`http://<domain>:<port>` as Higress builds it (an IPv6 domain gets brackets)."""
    host = config.domain
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"http://{host}:{config.port or DEFAULT_PORT}"


class EurekaRegistry(Registry):
    """A watch of one Eureka server (`domain`, `port` of the McpBridge entry; `vport` overrides ports)."""

    def __init__(
        self, config: RegistryConfig, credentials: Credentials, *, poll_interval: float | None = None
    ) -> None:
        super().__init__(config, credentials)
        self.poll_interval = poll_interval if poll_interval is not None else poll_interval_from_env()
        self.base_url = base_url(config)
        # The prefix that answered, once one has.
        self.prefix: str | None = None
        # Counters for tests and logs.
        self.full_fetches = 0
        self.delta_fetches = 0
        self._apps: dict[str, dict[str, EurekaInstance]] = {}
        # Statuses of full-document entries without an id: the server counts them in its hashcode.
        self._unkeyed: Counter[str] = Counter()
        self._unkeyed_problems: set[tuple[str, str]] = set()
        self._published: dict[str, RegistryService] = {}
        # The problems standing at the last poll: each is reported when it appears, not on every poll.
        self._reported: set[tuple[str, str]] = set()
        # Whether a refused delta was logged already (a server with deltas disabled refuses every poll).
        self._delta_refused = False

    async def run(self, sink: RegistrySink) -> None:
        if not self.config.domain:
            raise EurekaError(f"registry {self.config.key} has no domain")
        # Each run starts from nothing: its first resync republishes everything and re-reports problems.
        self._apps, self._unkeyed, self._unkeyed_problems = {}, Counter(), set()
        self._published, self._reported = {}, set()
        timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
        # JSON is asked for; a server that ignores Accept answers XML, which is read as well.
        headers = {"Accept": "application/json"}
        async with aiohttp.ClientSession(timeout=timeout, headers=headers) as http:
            await self._full_fetch(http, sink)
            while True:
                # The schedule itself (as DiscoveryClient's fixed-delay timer), not a synchronisation.
                await asyncio.sleep(self.poll_interval)
                await self._poll_delta(http, sink)

    # --------------------------------------------------------------------------------------- HTTP

    async def _get(self, http: aiohttp.ClientSession, path: str) -> tuple[int, bytes]:
        url = self.base_url + path
        try:
            async with http.get(url) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise EurekaError(f"GET {url}: {exc!r}") from exc

    async def _fetch_apps(self, http: aiohttp.ClientSession) -> Document:
        prefixes = (self.prefix,) if self.prefix else PREFIXES
        for prefix in prefixes:
            status, body = await self._get(http, f"{prefix}/apps")
            if status == 404 and prefix != prefixes[-1]:
                continue
            if status != 200:
                raise EurekaError(f"GET {self.base_url}{prefix}/apps: HTTP {status} {_snippet(body)}")
            try:
                doc = parse_document(body)
            except DocumentError as exc:
                raise EurekaError(f"GET {self.base_url}{prefix}/apps: {exc}") from exc
            if self.prefix != prefix:
                log.info("eureka %s serves under %s", self.base_url, prefix, extra=self._log_extra())
                self.prefix = prefix
            return doc
        raise AssertionError("unreachable")  # pragma: no cover

    # ---------------------------------------------------------------------------------- reconcile

    async def _full_fetch(
        self,
        http: aiohttp.ClientSession,
        sink: RegistrySink,
        problems: frozenset[tuple[str, str]] = frozenset(),
    ) -> None:
        doc = await self._fetch_apps(http)
        sink.answered()
        self.full_fetches += 1
        apps: dict[str, dict[str, EurekaInstance]] = {}
        for instance in doc.instances:
            apps.setdefault(instance.app, {})[instance.instance_id] = instance
        self._apps, self._unkeyed, self._unkeyed_problems = apps, doc.unkeyed_statuses, set(doc.problems)
        services = self._services(sink, problems, resync=True)
        await sink.resync(sorted(services.values(), key=lambda s: s.hostname))
        self._published = services
        log.debug(
            "full fetch: %d applications, %d services, hashcode %s",
            len(apps),
            len(services),
            doc.apps_hashcode,
            extra=self._log_extra(),
        )

    async def _poll_delta(self, http: aiohttp.ClientSession, sink: RegistrySink) -> None:
        assert self.prefix is not None
        status, body = await self._get(http, f"{self.prefix}/apps/delta")
        sink.answered()
        self.delta_fetches += 1
        if status != 200:
            # 403: delta disabled on the server, or its registry not ready; DiscoveryClient then falls
            # back to the full registry too.
            log.log(
                logging.DEBUG if self._delta_refused else logging.INFO,
                "delta refused (HTTP %d); fetching the full registry",
                status,
                extra=self._log_extra(),
            )
            self._delta_refused = True
            await self._full_fetch(http, sink)
            return
        try:
            delta = parse_document(body)
        except DocumentError as exc:
            await self._full_fetch(http, sink, frozenset({("apps/delta", str(exc))}))
            return
        # Entries the delta itself cannot express stand as problems while the window repeats them.
        problems = set(delta.problems)
        for instance in delta.instances:
            problems |= self._apply(instance)
        local = self._hashcode()
        if local != delta.apps_hashcode:
            log.info(
                "hashcode mismatch after delta %s (local %s, server %s); fetching the full registry",
                delta.versions_delta,
                local,
                delta.apps_hashcode,
                extra=self._log_extra(),
            )
            await self._full_fetch(http, sink, frozenset(problems))
            return
        services = self._services(sink, problems, resync=False)
        for hostname in sorted(self._published.keys() - services.keys()):
            await sink.delete(hostname)
            del self._published[hostname]
        for hostname in sorted(services):
            if self._published.get(hostname) != services[hostname]:
                await sink.upsert(services[hostname])
                self._published[hostname] = services[hostname]

    def _apply(self, instance: EurekaInstance) -> set[tuple[str, str]]:
        """One delta entry; returns its problem if it cannot be applied. The delta repeats every change
        of its 3-minute window on each poll, so applying is idempotent; a DELETED for an unknown
        instance is nothing to do."""
        if instance.action in (ADDED, MODIFIED):
            self._apps.setdefault(instance.app, {})[instance.instance_id] = instance
        elif instance.action == DELETED:
            app = self._apps.get(instance.app)
            if app is not None:
                app.pop(instance.instance_id, None)
                if not app:
                    del self._apps[instance.app]
        else:
            # Not applied: if it mattered, the hashcode check catches it.
            return {(f"{instance.app}/{instance.instance_id}", f"unknown actionType {instance.action!r}")}
        return set()

    def _hashcode(self) -> str:
        statuses: list[str] = [i.status for app in self._apps.values() for i in app.values()]
        statuses.extend(self._unkeyed.elements())
        return reconcile_hashcode(statuses)

    def _services(
        self,
        sink: RegistrySink,
        problems: set[tuple[str, str]] | frozenset[tuple[str, str]],
        *,
        resync: bool,
    ) -> dict[str, RegistryService]:
        """The services of the local copy, reporting its problems (malformed instances, colliding app
        names, plus `problems` of this poll). A resync reports every standing problem: the registry
        status keeps only what was reported again since the previous resync. A delta poll reports only
        the problems that were not standing at the last poll, as the window repeats entries for 3 minutes."""
        services, collisions = build_services(self.config, self._apps)
        current = set(problems) | set(collisions) | self._unkeyed_problems
        current |= {
            (f"{i.app}/{i.instance_id}", i.problem)
            for app in self._apps.values()
            for i in app.values()
            if i.problem
        }
        # The sink logs each problem itself.
        for what, reason in sorted(current if resync else current - self._reported):
            sink.problem(what, reason)
        self._reported = current
        return services

    def _log_extra(self) -> dict[str, Any]:
        return {"registry": self.config.key, "eureka": self.base_url}


def _snippet(body: bytes) -> str:
    return body[:200].decode("utf-8", "replace").strip()
