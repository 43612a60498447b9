"""K8sWatcher: a Kubernetes cluster as the source `k8s/<cluster>`.

One list+watch loop per feed (resources.py), all running concurrently: a kind that fails, or a CRD that
is not installed, holds up nothing else. Each feed turns the API's objects into event bodies
(normalize.py), keeps the ones it publishes, and hands them to its kind's publisher (publisher.py), which
resyncs the kind after every list and publishes what changed after every watch event.

Every Ingress and every IngressClass is published: which Ingresses the gateway serves is the builder's
decision (docs/design.md §4). The class rule (xdsbus.translate.ingress_class) is applied here only to
choose which Ingresses get the gateway's address written into their status, and every IngressClass change
checks them again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Sequence
from typing import Any

from kubernetes_asyncio import client

from xdsbus.bus import Bus
from xdsbus.lease import Lease, pod_identity
from xdsbus.model.k8s import K8sIngress, decode_object
from xdsbus.secretbox import SecretBox
from xdsbus.translate.ingress_class import DEFAULT_INGRESS_CLASS, class_facts, ignored_reason
from xdsbus.watcher import Watcher
from xdsbus_watch_k8s.api import KubeApi
from xdsbus_watch_k8s.gateway_status import GatewayStatusWriter
from xdsbus_watch_k8s.list_watch import DEFAULT_PAGE_SIZE, DEFAULT_WATCH_TIMEOUT, DELETED, ListWatch
from xdsbus_watch_k8s.normalize import normalize, object_name
from xdsbus_watch_k8s.publisher import Body, KindPublisher
from xdsbus_watch_k8s.resources import (
    BACKEND_KINDS,
    DEFAULT_SYSTEM_NAMESPACE,
    INGRESS,
    INGRESS_CLASS,
    ROUTE_KINDS,
    SECRET,
    WASM_PLUGIN,
    Feed,
    feeds,
)
from xdsbus_watch_k8s.status_writer import StatusWriter, lease_name, load_balancer_ingress
from xdsbus_watch_k8s.wasm_modules import PluginModules

log = logging.getLogger(__name__)


class K8sWatcher(Watcher):
    """Lists and watches one cluster and publishes it as `k8s/<cluster>`."""

    def __init__(
        self,
        bus: Bus,
        configuration: client.Configuration,
        *,
        cluster: str = "default",
        watch_namespace: str = "",
        system_namespace: str = DEFAULT_SYSTEM_NAMESPACE,
        secret_namespaces: Sequence[str] = (),
        ingress_class: str = DEFAULT_INGRESS_CLASS,
        gateway_addresses: Sequence[str] = (),
        gateway_status: bool = True,
        watch_timeout: int = DEFAULT_WATCH_TIMEOUT,
        page_size: int = DEFAULT_PAGE_SIZE,
        retry_base: float = 0.2,
        retry_cap: float = 30.0,
        instance_id: str | None = None,
        lease_ttl: float | None = None,
        secret_box: SecretBox | None = None,
        stop: asyncio.Event | None = None,
    ) -> None:
        super().__init__(
            bus,
            f"k8s/{cluster}",
            secret_box=secret_box,
            stop=stop,
            instance_id=instance_id or pod_identity(),
            lease_ttl=lease_ttl,
        )
        self.configuration = configuration
        self.cluster = cluster
        self.gateway_addresses = tuple(gateway_addresses)
        self.gateway_status = gateway_status
        self.watch_timeout = watch_timeout
        self.page_size = page_size
        self.retry_base = retry_base
        self.retry_cap = retry_cap
        self.feeds = feeds(watch_namespace, system_namespace, secret_namespaces)
        self.ingress_class = ingress_class
        # Kept across calls of watch(): what was published is what the next resync is compared with.
        counts = Counter(feed.kind for feed in self.feeds)
        self.publishers = {kind: KindPublisher(self, kind, count) for kind, count in counts.items()}
        # WasmPlugins without a sha256 get their module digest recorded (docs/wasm-modules.md).
        self.modules = PluginModules(self.publishers.get(SECRET.kind))
        self.loops: list[ListWatch] = []
        self.status_writer: StatusWriter | None = None

    def new_term(self) -> None:
        """Another replica may have published while this one stood by: the term starts as the first one
        did, each kind resynced once all its feeds listed, publishing every object again."""
        for publisher in self.publishers.values():
            publisher.reset()

    def _status_wanted(self, key: str) -> bool:
        """Whether the gateway's address belongs in this Ingress's status: published and of the class
        `--ingress-class` names (the builder's flag of the same name decides what is served)."""
        ingresses = self.publishers[INGRESS.kind]
        body = ingresses.get(key)
        if body is None or not ingresses.is_published(key):
            return False
        try:
            ingress = decode_object(body, K8sIngress)
        except Exception:  # the builder rejects it and says why; no address for it
            return False
        classes = {
            name: class_facts(name, obj)
            for name, obj in self.publishers[INGRESS_CLASS.kind].objects().items()
        }
        return ignored_reason(ingress, classes, self.ingress_class) is None

    async def watch(self) -> None:
        """Run every feed (and the status writer) until `stop` is set."""
        async with KubeApi(self.configuration, f"xdsbus-watch-k8s/{self.instance_id}") as api:
            if self.gateway_addresses or self.gateway_status:
                lease = Lease(
                    self.bus, lease_name(self.cluster), self.instance_id, self.bus.settings.lease_ttl
                )
                self.status_writer = StatusWriter(
                    api,
                    lease,
                    load_balancer_ingress(self.gateway_addresses),
                    self._status_wanted,
                    self.stop,
                    retry_cap=self.retry_cap,
                    gateway=GatewayStatusWriter(
                        api,
                        self.bus,
                        self.source,
                        retry_cap=self.retry_cap,
                        addresses=self.gateway_addresses,
                    )
                    if self.gateway_status
                    else None,
                )
            indexes: Counter[str] = Counter()
            self.loops = []
            tasks: list[asyncio.Task[None]] = []
            for feed in self.feeds:
                sink = _FeedSink(self, feed, indexes[feed.kind])
                indexes[feed.kind] += 1
                loop = ListWatch(
                    api,
                    feed,
                    sink,
                    self.stop,
                    watch_timeout=self.watch_timeout,
                    page_size=self.page_size,
                    retry_base=self.retry_base,
                    retry_cap=self.retry_cap,
                )
                self.loops.append(loop)
            backends = [loop for loop in self.loops if loop.feed.kind in BACKEND_KINDS]
            for loop in self.loops:
                if loop.feed.kind in ROUTE_KINDS:
                    loop.after = backends
                tasks.append(asyncio.create_task(loop.run(), name=f"watch {loop.feed.name}"))
            writer = None
            if self.status_writer is not None:
                writer = asyncio.create_task(self.status_writer.run(), name="status writes")
            log.info("%s: watching %d feeds as %s", self.source, len(self.feeds), self.instance_id)
            try:
                await self.stop.wait()
            finally:
                # The loops sit in a read: cancel them. The status writer returns by itself once stop is
                # set, releasing its lease so that a standby takes over at once.
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if writer is not None:
                    if not self.stop.is_set():
                        writer.cancel()
                    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(writer, timeout=5)


class _FeedSink:
    """Turns one feed's API objects into its kind's published state."""

    def __init__(self, watcher: K8sWatcher, feed: Feed, index: int) -> None:
        self.watcher = watcher
        self.feed = feed
        self.index = index
        self.publisher = watcher.publishers[feed.kind]
        # The list in progress, page by page: the feed's bodies by key, and every listed Ingress by key.
        self._listed: dict[str, Body] = {}
        self._listed_raw: list[tuple[str, dict[str, Any]]] = []

    def _key(self, obj: dict[str, Any]) -> tuple[str, str]:
        """(event key, name); the name is "" when the object has none."""
        namespace, name = object_name(obj)
        return self.feed.resource.key(namespace, name), name

    def _body(self, api_version: str, obj: dict[str, Any], name: str) -> Body | None:
        if not name or not self.feed.accept(obj):
            return None
        return normalize(obj, api_version, self.feed.kind)

    async def page(self, feed: Feed, api_version: str, items: list[dict[str, Any]], first: bool) -> None:
        """A page of a list: its objects are published now (those that changed), before the list ends;
        the kind's resync waits for the whole list (`replace`)."""
        if first:
            self._listed, self._listed_raw = {}, []
        bodies: dict[str, Body] = {}
        # Only Ingresses' status is looked at after the list (`_after_change`): the objects of other
        # kinds are dropped with their page, not held to the end of the list.
        keep_raw = self.feed.kind == INGRESS.kind
        for obj in items:
            key, name = self._key(obj)
            if keep_raw:
                self._listed_raw.append((key, obj))
            if (body := self._body(api_version, obj, name)) is not None:
                bodies[key] = body
        self._listed.update(bodies)
        # A WasmPlugin's body waits for its module's digest (wasm_modules.py): published by the resync.
        if self.feed.kind != WASM_PLUGIN.kind:
            await self.publisher.publish_listed(bodies)

    async def replace(self, feed: Feed, api_version: str) -> None:
        """The list is complete: its pages held everything the feed holds."""
        objects, keyed = self._listed, self._listed_raw
        self._listed, self._listed_raw = {}, []
        if self.feed.kind == WASM_PLUGIN.kind:
            objects = await self.watcher.modules.bodies(objects)
        await self.publisher.replace(self.index, objects)
        await self._after_change(keyed, deleted=False, relisted=True)

    def answered(self) -> None:
        """The API server answered: the source lag of /metrics counts from now."""
        self.watcher.source_seen()

    async def apply(self, feed: Feed, api_version: str, event_type: str, obj: dict[str, Any]) -> None:
        """A watch event."""
        key, name = self._key(obj)
        deleted = event_type == DELETED
        body = None if deleted else self._body(api_version, obj, name)
        await self.publisher.put(self.index, key, await self._resolved(body) if body is not None else None)
        await self._after_change([(key, obj)], deleted=deleted, relisted=False)

    async def _resolved(self, body: Body) -> Body:
        if self.feed.kind != WASM_PLUGIN.kind:
            return body
        return await self.watcher.modules.body(body)

    async def _after_change(
        self, keyed: list[tuple[str, dict[str, Any]]], *, deleted: bool, relisted: bool
    ) -> None:
        kind = self.feed.kind
        if kind == INGRESS_CLASS.kind:
            if self.watcher.status_writer is not None:
                self.watcher.status_writer.touch()
        elif kind == INGRESS.kind and self.watcher.status_writer is not None:
            writer = self.watcher.status_writer
            if relisted:
                writer.retain(key for key, _ in keyed)
            for key, obj in keyed:
                if deleted:
                    writer.forget(key)
                else:
                    writer.observe(key, obj)
