"""One edge: the snapshot cache fed by ledger followers, the xDS gRPC server, the HTTP port."""

from __future__ import annotations

import dataclasses
import logging
import socket
import tempfile
from pathlib import Path

import grpc

from xdsbus import proxy_store
from xdsbus.bus import Bus
from xdsbus.contract.type_urls import TYPE_ORDER
from xdsbus.secretbox import SecretBox
from xdsbus.wasm.credentials import DockerConfig
from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus_edge.access_policy import AccessPolicy
from xdsbus_edge.cache import SnapshotCache
from xdsbus_edge.http import DebugApi, HttpServer, ProbeApi
from xdsbus_edge.limits import EdgeLimits, StreamLimits, server_options
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.proxy_status import DEFAULT_INTERVAL, ProxyStatusPublisher
from xdsbus_edge.registry import StreamTable
from xdsbus_edge.scopes import DEFAULT_SCOPE
from xdsbus_edge.server import SERVER_OPTIONS, XdsServer
from xdsbus_edge.snapshot import Snapshot, short_type
from xdsbus_edge.stream_access import StreamAccess
from xdsbus_edge.wasm_server import ModuleServer
from xdsbus_edge.wasm_store import DEFAULT_MAX_BYTES, ModuleStore
from xdsbus_edge.xds_tls import ServerTls, is_loopback

log = logging.getLogger(__name__)


def split_host_port(address: str) -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` -> (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


@dataclasses.dataclass
class EdgeConfig:
    xds_listen: str = "0.0.0.0:18000"
    http_listen: str = "0.0.0.0:15014"
    # The /debug pages: loopback unless configured otherwise (docs/design.md §10); port 0 picks one.
    debug_listen: str = "127.0.0.1:0"
    # Opens the sealed Secret bodies of the ledger (docs/design.md §5); None serves no sealed Secret.
    keyring: SecretBox | None = None
    # Scopes followed from the start (and required by /ready); others are followed when a proxy asks.
    scopes: tuple[str, ...] = (DEFAULT_SCOPE,)
    lazy_scopes: bool = True
    lazy_scope_wait: float = 2.0
    # TLS (mTLS with a client CA) on the xDS port; None: plaintext, refused unless it listens on loopback.
    xds_tls: ServerTls | None = None
    # Who may read which scopes and Gateways; None: every proxy the transport accepts (docs/design.md §10).
    access_policy: AccessPolicy | None = None
    # What clients get at most: streams, queued requests, request size, scopes, connection age and
    # response bytes in flight (limits.py).
    limits: EdgeLimits = dataclasses.field(default_factory=EdgeLimits)
    # Seconds NATS may be lost, or a scope stay behind the ledger head, before /ready fails.
    ready_max_lag: float = 30.0
    # The module port Envoy's wasm filters fetch from (docs/wasm-modules.md); port 0 picks one.
    wasm_listen: str = "127.0.0.1:0"
    # Where verified modules are kept, and how many bytes of them at most.
    wasm_cache_dir: Path = dataclasses.field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "xdsbus-wasm"
    )
    wasm_cache_max_bytes: int = DEFAULT_MAX_BYTES
    # Registry credentials for pulling OCI modules (a docker config.json); None: anonymous pulls.
    wasm_registry_auth: DockerConfig | None = None
    # Seconds one module fetch may take in all.
    wasm_fetch_timeout: float = 30.0
    # This edge's name in KV xdsbus_proxies (docs/proxy-status.md); "": `<hostname>-<xDS port>`.
    edge_id: str = ""
    # Seconds between writes of a proxy's sync state to xdsbus_proxies, at most.
    proxy_status_interval: float = DEFAULT_INTERVAL


class Edge:
    """Start, serve, stop."""

    def __init__(self, bus: Bus, config: EdgeConfig) -> None:
        self.bus = bus
        self.config = config
        self.metrics = EdgeMetrics()
        self.limits = StreamLimits(config.limits)
        self.metrics.watch_limits(self.limits)
        self.cache = SnapshotCache(
            bus,
            scopes=config.scopes,
            lazy=config.lazy_scopes,
            lazy_wait=config.lazy_scope_wait,
            on_switch=self._switched,
            on_rejected=self._rejected,
            keyring=config.keyring,
            on_sealed=lambda scope, _version: self.metrics.versions_sealed.inc(scope),
            on_missing=lambda body: self.metrics.bodies_missing.inc(body.scope),
            allowed_scopes=config.limits.allowed_scopes,
            max_scopes=config.limits.max_scopes,
            idle_timeout=config.limits.scope_idle_timeout,
        )
        self.streams = StreamTable(self.metrics)
        access = (
            StreamAccess(config.access_policy, self.metrics.xds_denied.inc)
            if config.access_policy is not None
            else None
        )
        self.xds = XdsServer(self.cache, self.streams, access, self.limits)
        self.metrics.watch_connection(bus.connection, self.cache.lags)
        self.http = HttpServer(ProbeApi(self.cache, self.metrics, bus.connection, config.ready_max_lag))
        self.debug_http = HttpServer(DebugApi(self.cache, self.streams))
        self.modules = ModuleServer(
            ModuleStore(config.wasm_cache_dir, config.wasm_cache_max_bytes),
            ModuleFetcher(timeout=config.wasm_fetch_timeout),
            self.metrics.registry,
            credentials=config.wasm_registry_auth,
        )
        self._grpc: grpc.aio.Server | None = None
        self.proxy_status: ProxyStatusPublisher | None = None
        self.xds_port = 0
        self.http_port = 0
        self.debug_port = 0
        self.wasm_port = 0

    async def start(self) -> None:
        """Listen on both ports, then start following the ledger."""
        options = {**dict(SERVER_OPTIONS), **dict(server_options(self.config.limits))}
        self._grpc = grpc.aio.server(options=list(options.items()))
        self.xds.add_to(self._grpc)
        tls = self.config.xds_tls
        if tls is not None:
            self.xds_port = self._grpc.add_secure_port(self.config.xds_listen, tls.credentials())
        elif is_loopback(split_host_port(self.config.xds_listen)[0]):
            self.xds_port = self._grpc.add_insecure_port(self.config.xds_listen)
        else:
            raise ValueError(f"plaintext xDS is for loopback only, not {self.config.xds_listen}")
        if not self.xds_port:
            raise OSError(f"cannot listen for xDS on {self.config.xds_listen}")
        await self._grpc.start()
        self.http_port = await self.http.start(*split_host_port(self.config.http_listen))
        self.debug_port = await self.debug_http.start(*split_host_port(self.config.debug_listen))
        self.wasm_port = await self.modules.start(*split_host_port(self.config.wasm_listen))
        await self.cache.start()
        await self._start_proxy_status()
        log.info(
            "edge serving xDS (%s) on port %d, HTTP on port %d, debug pages on %s port %d, wasm modules on"
            " %s port %d, scopes %s",
            "plaintext" if tls is None else "mTLS" if tls.mutual else "TLS",
            self.xds_port,
            self.http_port,
            split_host_port(self.config.debug_listen)[0],
            self.debug_port,
            split_host_port(self.config.wasm_listen)[0],
            self.wasm_port,
            ",".join(self.config.scopes),
        )

    async def stop(self, grace: float = 1.0) -> None:
        """Stop accepting streams, end the open ones (proxies reconnect to another replica), stop
        following the ledger."""
        if self._grpc is not None:
            await self._grpc.stop(grace)
        if self.proxy_status is not None:
            await self.proxy_status.stop()
        await self.http.stop()
        await self.debug_http.stop()
        await self.cache.stop()
        await self.modules.stop()

    async def _start_proxy_status(self) -> None:
        """Publish the proxies' sync state, rewriting live entries within the bucket's TTL."""
        kv = await proxy_store.bucket(self.bus)
        ttl = (await kv.status()).ttl or 0.0
        edge_id = self.config.edge_id or f"{socket.gethostname()}-{self.xds_port}"
        self.proxy_status = ProxyStatusPublisher(
            self.streams,
            self.bus,
            kv,
            edge_id,
            ttl=ttl,
            interval=self.config.proxy_status_interval,
            metrics=self.metrics,
            responses=self.limits.budget,
        )
        self.proxy_status.start()
        log.info("publishing proxy status as edge %s (bucket TTL %gs)", edge_id, ttl)

    def _switched(self, snap: Snapshot) -> None:
        m = self.metrics
        m.snapshot_version.set(snap.version, snap.scope)
        self.modules.learn(snap, self.cache.scopes())
        for type_url in dict.fromkeys((*TYPE_ORDER, *snap.type_urls())):
            m.snapshot_resources.set(len(snap.of(type_url)), snap.scope, short_type(type_url))
            m.snapshot_bytes.set(snap.size_bytes(type_url), snap.scope, short_type(type_url))

    def _rejected(self, scope: str, version: int, reason: str) -> None:
        self.metrics.versions_rejected.inc(scope)
