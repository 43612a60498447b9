"""nacos-sdk-python 3.x's `NacosNamingService` (asyncio + gRPC), with its quirks handled in one place.

What the SDK does that a long-running watcher must work around (docs/registries.md §1.5, and its source):

* It drops empty pushes unless `update_cache_when_empty` is set: without it the last instance going away is
  never reported. Set.
* It loads a disk cache at start and writes one on every change (`~/nacos/cache`), and logs to
  `~/logs/nacos/naming.log` through a file handler it adds to the "naming" logger on every construction
  (so handlers pile up across reconnects) with `propagate=False`. We give each client a private temporary
  directory, take the file handler off again and let the logger propagate into the service's logging.
* Constructing it starts background tasks that nothing ends: the redo loop (`shutdown()` leaves it running,
  waking every 30 s) and, with a username, a login task whose failure is never retrieved. We collect the
  tasks the (synchronous) constructor creates and cancel them on close.
* `create_naming_service` does not fail when the server is down: it tries three times, waiting up to the
  gRPC timeout for each channel, then returns with the client reconnecting in the background. We probe the
  gRPC port first (fast failure) and check that the client is running afterwards.
* After a reconnect it only re-sends subscriptions on its 30 s redo timer, so pushes are lost meanwhile.
  `healthy()` therefore reports False both while disconnected and once the connection was replaced; the
  watcher then starts over (a fresh client, a fresh resync) rather than trusting the old one.
* The gRPC port is the HTTP port plus `port_offset` (1000): `domain:8848` is served on 9848.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from logging.handlers import TimedRotatingFileHandler
from typing import Any

from v2.nacos import (
    ClientConfigBuilder,
    GRPCConfig,
    ListServiceParam,
    NacosNamingService,
    SubscribeServiceParam,
)

log = logging.getLogger("xdsbus_watch_nacos")

SDK_LOGGER = "naming"  # v2.nacos.common.constants.Constants.NAMING_MODULE
GRPC_PORT_OFFSET = 1000
DEFAULT_PORT = 8848
PAGE_SIZE = 50  # as Higress (DefaultFetchPageSize)
# Per-request timeout (the SDK's default gRPC timeout) and HTTP timeout (Higress' DefaultNacosTimeout).
GRPC_TIMEOUT_MS = 3000
HTTP_TIMEOUT_MS = 5000
PROBE_TIMEOUT = 3.0

InstancesCallback = Callable[[list[Any]], Awaitable[None]]


class NacosUnavailable(ConnectionError):
    """The Nacos server cannot be reached, or the connection to it was lost."""


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """How to reach one Nacos: `servers` are `host:port` HTTP addresses (gRPC on port + 1000)."""

    servers: tuple[str, ...]
    namespace_id: str
    username: str | None = None
    password: str | None = None
    access_key: str | None = None
    secret_key: str | None = None


def split_address(server: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, `http://host:port` or a bare host -> (host, port)."""
    rest = server.split("://", 1)[-1].rstrip("/")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.lstrip(":")
    elif rest.count(":") == 1:
        host, _, port = rest.partition(":")
    else:
        host, port = rest, ""
    return host, int(port) if port else DEFAULT_PORT


async def probe(servers: Sequence[str]) -> None:
    """Fail fast when no server accepts TCP on its gRPC port (the SDK would spend 3 × its timeout)."""
    errors = []
    last: BaseException | None = None
    for server in servers:
        host, port = split_address(server)
        try:
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port + GRPC_PORT_OFFSET), PROBE_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            errors.append(f"{host}:{port + GRPC_PORT_OFFSET}: {exc or type(exc).__name__}")
            last = exc
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    # Chained: a refused connection is retried within a second by the registry machinery.
    raise NacosUnavailable("cannot reach Nacos gRPC: " + "; ".join(errors)) from last


class NacosClient:
    """One connection to one Nacos namespace; `close()` undoes everything `connect()` set up."""

    def __init__(self, service: Any, workdir: str, spawned: set[asyncio.Task[Any]]) -> None:
        self._service = service
        self._workdir = workdir
        self._spawned = spawned
        self._connection: Any = None

    @classmethod
    async def connect(cls, settings: ClientSettings) -> NacosClient:
        await probe(settings.servers)
        workdir = tempfile.mkdtemp(prefix="xdsbus-nacos-")
        builder = (
            ClientConfigBuilder()
            .server_address(",".join(settings.servers))
            .namespace_id(settings.namespace_id)
            .timeout_ms(HTTP_TIMEOUT_MS)
            .log_dir(workdir)
            .cache_dir(workdir)
            .load_cache_at_start(False)
            .log_level(logging.INFO if log.isEnabledFor(logging.DEBUG) else logging.WARNING)
            .grpc_config(GRPCConfig(grpc_timeout=GRPC_TIMEOUT_MS, port_offset=GRPC_PORT_OFFSET))
        )
        if settings.username and settings.password:
            builder = builder.username(settings.username).password(settings.password)
        if settings.access_key and settings.secret_key:
            builder = builder.access_key(settings.access_key).secret_key(settings.secret_key)
        config = builder.build()
        config.set_update_cache_when_empty(True)

        # The constructor is synchronous: every task that appears across it is one of the SDK's.
        before = asyncio.all_tasks()
        try:
            service = NacosNamingService(config)
        finally:
            _release_sdk_log_handlers(workdir)
        spawned = asyncio.all_tasks() - before
        for task in spawned:
            task.add_done_callback(_retrieve)
        client = cls(service, workdir, spawned)
        try:
            await service.grpc_client_proxy.start()
            rpc = service.grpc_client_proxy.rpc_client
            if not rpc.is_running():
                raise NacosUnavailable(f"cannot connect to Nacos at {','.join(settings.servers)}")
            client._connection = rpc.current_connection
        except BaseException:
            await client.close()
            raise
        return client

    def healthy(self) -> bool:
        """Connected, and still on the connection the subscriptions were made on."""
        rpc = self._service.grpc_client_proxy.rpc_client
        return bool(rpc.is_running()) and rpc.current_connection is self._connection

    async def list_services(self, group: str, namespace_id: str) -> list[str]:
        """Every service name of the group (ServiceListRequest, paged as Higress does)."""
        names: list[str] = []
        page_no = 1
        while True:
            page = await self._service.list_services(
                ListServiceParam(
                    namespace_id=namespace_id, group_name=group, page_no=page_no, page_size=PAGE_SIZE
                )
            )
            batch = list(page.services or [])
            names.extend(batch)
            if len(batch) < PAGE_SIZE or len(names) >= page.count or page_no * PAGE_SIZE >= page.count:
                return names
            page_no += 1

    async def subscribe(self, group: str, service: str, callback: InstancesCallback) -> list[Any]:
        """Subscribe; `callback` gets the instance list on every change (awaited inside the SDK's push
        handler, so it must be quick), normally also right away. Returns the instances the SDK now holds:
        it calls back only when they differ from its cache, which may remember an earlier subscription."""
        await self._service.subscribe(
            SubscribeServiceParam(service_name=service, group_name=group, subscribe_callback=callback)
        )
        info = await self._service.service_info_holder.get_service_info(service, group, "")
        return list(info.hosts) if info is not None and info.hosts else []

    async def unsubscribe(self, group: str, service: str, callback: InstancesCallback) -> None:
        await self._service.unsubscribe(
            SubscribeServiceParam(service_name=service, group_name=group, subscribe_callback=callback)
        )

    async def close(self) -> None:
        try:
            with contextlib.suppress(Exception):
                await self._service.shutdown()
        finally:
            for task in self._spawned:
                task.cancel()
            if self._spawned:
                await asyncio.gather(*self._spawned, return_exceptions=True)
            shutil.rmtree(self._workdir, ignore_errors=True)


def _retrieve(task: asyncio.Task[Any]) -> None:
    # The SDK's fire-and-forget tasks (the initial login) may fail; the failure shows again on the first
    # request, so only log it here instead of leaving "Task exception was never retrieved".
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.debug("nacos client background task failed: %s", exc)


def _release_sdk_log_handlers(workdir: str) -> None:
    """Take off the file handler the SDK just added for `workdir`, and let its records reach our logging."""
    logger = logging.getLogger(SDK_LOGGER)
    for handler in list(logger.handlers):
        if isinstance(handler, TimedRotatingFileHandler) and handler.baseFilename.startswith(workdir):
            logger.removeHandler(handler)
            handler.close()
    logger.propagate = True
