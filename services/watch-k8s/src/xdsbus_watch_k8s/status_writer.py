"""Ingress status: the gateway's address in `status.loadBalancer.ingress` of every accepted Ingress.

Only the holder of the lease `watch-k8s.<cluster>.status` (KV `xdsbus_leases`) writes; standbys publish
events like the holder but never touch status, so replicas do not fight over it. The holder compares each
accepted Ingress' status as last seen in the watch with the wanted one and patches the `/status`
subresource (JSON merge patch) only where they differ. A change of the Ingress, including another
controller overwriting the status, shows up in the watch and is corrected. Status never reaches the event
log: it is stripped from event bodies, so these writes cause no events.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp

from xdsbus.backoff import Backoff
from xdsbus.lease import Lease
from xdsbus_watch_k8s.api import ApiError, KubeApi, NotFound
from xdsbus_watch_k8s.gateway_status import GatewayStatusWriter
from xdsbus_watch_k8s.resources import INGRESS

log = logging.getLogger(__name__)

LoadBalancer = list[dict[str, Any]]


def lease_name(cluster: str) -> str:
    """The KV key of the status lease of one cluster."""
    return f"watch-k8s.{cluster}.status"


def load_balancer_ingress(addresses: Iterable[str]) -> LoadBalancer:
    """`status.loadBalancer.ingress` for the gateway's addresses: IPs as `ip`, names as `hostname`."""
    entries: LoadBalancer = []
    for address in addresses:
        try:
            entries.append({"ip": str(ipaddress.ip_address(address))})
        except ValueError:
            entries.append({"hostname": address})
    return entries


class StatusWriter:
    """Keeps the load balancer status of accepted Ingresses at the gateway's addresses, while leading."""

    def __init__(
        self,
        api: KubeApi,
        lease: Lease,
        addresses: LoadBalancer,
        accepted: Callable[[str], bool],
        stop: asyncio.Event,
        *,
        retry_cap: float = 30.0,
        gateway: GatewayStatusWriter | None = None,
    ) -> None:
        self.api = api
        self.gateway = gateway
        self.lease = lease
        self.wanted = addresses
        self.accepted = accepted
        self.stop = stop
        self.retry_cap = retry_cap
        self._seen: dict[str, LoadBalancer] = {}  # Ingress key -> status.loadBalancer.ingress last seen
        self._pending: set[str] = set()
        self._wake = asyncio.Event()

    def observe(self, key: str, obj: dict[str, Any]) -> None:
        """An Ingress as the API returned it (with its status)."""
        status = obj.get("status")
        load_balancer = status.get("loadBalancer") if isinstance(status, dict) else None
        ingress = load_balancer.get("ingress") if isinstance(load_balancer, dict) else None
        self._seen[key] = ingress if isinstance(ingress, list) else []
        self.touch([key])

    def retain(self, keys: Iterable[str]) -> None:
        """After a list: only these Ingresses exist."""
        for key in set(self._seen) - set(keys):
            self.forget(key)

    def forget(self, key: str) -> None:
        """The Ingress is gone."""
        self._seen.pop(key, None)
        self._pending.discard(key)

    def touch(self, keys: Iterable[str] | None = None) -> None:
        """Check these Ingresses (all when None) again, e.g. after their acceptance changed."""
        self._pending.update(self._seen if keys is None else keys)
        self._wake.set()

    async def run(self) -> None:
        """Take the lease, write while holding it, stand by when it is lost; until `stop`."""
        while not self.stop.is_set():
            if not await self.lease.acquire(self.stop):
                return
            log.info("leading status writes (lease %s)", self.lease.name)
            try:
                await self._lead()
            finally:
                await self.lease.release()
            if not self.stop.is_set():
                log.warning("lost the status lease %s; standing by", self.lease.name)

    async def _lead(self) -> None:
        self.touch()  # a new holder re-asserts everything: the previous one may have died mid-way
        backoff = Backoff(base=0.5, cap=self.retry_cap)
        stop = asyncio.ensure_future(self.stop.wait())
        lost = asyncio.ensure_future(self.lease.lost.wait())
        # Gateway API statuses (gateway_status.py) are written under the same lease.
        gateway = None
        if self.gateway is not None:
            gateway = asyncio.create_task(self.gateway.lead(), name="gateway api status")
        try:
            while not (self.stop.is_set() or self.lease.lost.is_set()):
                wake = asyncio.ensure_future(self._wake.wait())
                await asyncio.wait({wake, stop, lost}, return_when=asyncio.FIRST_COMPLETED)
                wake.cancel()
                if self.stop.is_set() or self.lease.lost.is_set():
                    return
                self._wake.clear()
                if await self._write_pending():
                    backoff.reset()
                else:
                    # Failures stay pending; wake again after a pause rather than at the next event.
                    try:
                        await asyncio.wait_for(asyncio.shield(stop), timeout=backoff.next_delay())
                    except TimeoutError:
                        pass
                    self._wake.set()
        finally:
            stop.cancel()
            lost.cancel()
            if gateway is not None:
                gateway.cancel()
                await asyncio.gather(gateway, return_exceptions=True)

    async def _write_pending(self) -> bool:
        """Patch every pending Ingress whose status differs; False when a write failed."""
        pending, self._pending = self._pending, set()
        ok = True
        if not self.wanted:
            return ok  # no gateway addresses given: Ingress status is not ours to write
        for key in sorted(pending):
            if self.stop.is_set() or self.lease.lost.is_set():
                self._pending.update(pending)
                return ok
            if key not in self._seen or not self.accepted(key) or self._seen[key] == self.wanted:
                continue
            namespace, _, name = key.partition("/")
            path = INGRESS.collection_path(INGRESS.versions[0], namespace) + f"/{name}/status"
            try:
                await self.api.merge_patch(path, {"status": {"loadBalancer": {"ingress": self.wanted}}})
            except NotFound:
                self.forget(key)  # deleted meanwhile; the watch says so too
                continue
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("cannot write the status of Ingress %s: %s", key, exc)
                self._pending.add(key)
                ok = False
                continue
            # Assume it took: the watch confirms it, or shows a later change to correct.
            self._seen[key] = self.wanted
            log.debug("wrote the status of Ingress %s", key)
        return ok
