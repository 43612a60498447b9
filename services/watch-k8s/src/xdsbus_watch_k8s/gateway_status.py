"""Gateway API status: what the builder decided about GatewayClasses, Gateways and routes, written back.

The builder publishes its verdict on each object to KV `xdsbus_status` (xdsbus.status_store), with the
Gateway API's own status parts: `conditions`, `listeners`, `parents`, `addresses`. While the watcher
holds the status lease (status_writer.py), it watches that bucket for this source's GatewayClasses,
Gateways, HTTPRoutes and GRPCRoutes, turns each verdict into the object's status as the API defines it,
and patches the `/status` subresource (JSON merge patch) when that differs from the object's current
status:

- GatewayClass: `status.conditions`;
- Gateway: `status.conditions`, `status.listeners` (name, supportedKinds, attachedRoutes, conditions)
  and `status.addresses`;
- HTTPRoute, GRPCRoute: `status.parents`, replacing only the entries of our controller
  (`higress.io/gateway-controller`) and keeping those of other controllers.

A condition keeps its `lastTransitionTime` while its type, status and reason stay the same; otherwise it
gets the current (wall clock) time. Entries without any Gateway API part (an object the builder could not
decode) are not written. Status is stripped from event bodies, so these writes cause no events.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import logging
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from xdsbus import status_store
from xdsbus.backoff import Backoff
from xdsbus.bus import Bus
from xdsbus.contract.status import Condition, ListenerStatus, ObjectStatus
from xdsbus_watch_k8s.api import ApiError, KubeApi, NotFound
from xdsbus_watch_k8s.resources import GATEWAY, GATEWAY_CLASS, GATEWAY_STATUS_KINDS, Resource

log = logging.getLogger(__name__)

CONTROLLER_NAME = "higress.io/gateway-controller"
GATEWAY_GROUP = "gateway.networking.k8s.io"
RESOURCES: dict[str, Resource] = {r.kind: r for r in GATEWAY_STATUS_KINDS}
# The route kinds a listener supports by protocol, when its allowedRoutes names none.
_KINDS_BY_PROTOCOL = {"HTTP": ("HTTPRoute", "GRPCRoute"), "HTTPS": ("HTTPRoute", "GRPCRoute")}
_SUPPORTED_KINDS = {"HTTPRoute", "GRPCRoute"}

JSON = dict[str, Any]
Clock = Callable[[], str]


def now() -> str:
    """The current time as Kubernetes writes it: RFC 3339, UTC, whole seconds."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dicts(value: Any) -> list[JSON]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def conditions(wanted: list[Condition], existing: Any, clock: Clock) -> list[JSON]:
    """The API form of `wanted`, keeping each existing lastTransitionTime whose type, status and reason
    are unchanged."""
    previous = {c.get("type"): c for c in _dicts(existing)}
    out = []
    for cond in wanted:
        old = previous.get(cond.type)
        same = old is not None and (old.get("status"), old.get("reason")) == (cond.status, cond.reason)
        out.append(
            {
                "type": cond.type,
                "status": cond.status,
                "reason": cond.reason,
                "message": cond.message,
                "observedGeneration": cond.observed_generation,
                "lastTransitionTime": old.get("lastTransitionTime") if same and old else clock(),
            }
        )
    return out


def supported_kinds(spec_listener: Mapping[str, Any]) -> list[JSON]:
    """The route kinds a listener accepts: its allowedRoutes' kinds that we support, else by protocol."""
    allowed = spec_listener.get("allowedRoutes")
    kinds = _dicts(allowed.get("kinds")) if isinstance(allowed, dict) else []
    if kinds:
        names = [
            k.get("kind")
            for k in kinds
            if k.get("kind") in _SUPPORTED_KINDS and k.get("group", GATEWAY_GROUP) == GATEWAY_GROUP
        ]
    else:
        names = list(_KINDS_BY_PROTOCOL.get(str(spec_listener.get("protocol", "")), ()))
    return [{"group": GATEWAY_GROUP, "kind": name} for name in dict.fromkeys(names)]


def _listener(
    wanted: ListenerStatus, spec: Mapping[str, Any], existing: Mapping[str, Any], clock: Clock
) -> JSON:
    return {
        "name": wanted.name,
        "supportedKinds": supported_kinds(spec),
        "attachedRoutes": wanted.attached_routes,
        "conditions": conditions(wanted.conditions, existing.get("conditions"), clock),
    }


def _address(value: str) -> JSON:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return {"type": "Hostname", "value": value}
    return {"type": "IPAddress", "value": value}


def _same_ref(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = set(a) | set(b)
    return all(a.get(k) == b.get(k) for k in keys)


def wanted_status(
    status: ObjectStatus, obj: Mapping[str, Any], clock: Clock = now, addresses: tuple[str, ...] = ()
) -> JSON:
    """The status fields to set on `obj` (as the API returned it) for the builder's `status`.

    A Gateway's addresses are the builder's (--gateway-address there), else `addresses` (the watcher's
    own --gateway-address, which Ingress status uses too)."""
    current = obj.get("status")
    current = current if isinstance(current, dict) else {}
    if status.kind in (GATEWAY_CLASS.kind, GATEWAY.kind):
        out: JSON = {"conditions": conditions(status.conditions, current.get("conditions"), clock)}
        if status.kind == GATEWAY.kind:
            spec = obj.get("spec")
            spec_listeners = {
                str(li.get("name")): li
                for li in _dicts(spec.get("listeners") if isinstance(spec, dict) else [])
            }
            existing = {str(li.get("name")): li for li in _dicts(current.get("listeners"))}
            out["listeners"] = [
                _listener(li, spec_listeners.get(li.name, {}), existing.get(li.name, {}), clock)
                for li in status.listeners
            ]
            out["addresses"] = [_address(a) for a in status.addresses or addresses]
        return out
    parents = _dicts(current.get("parents"))
    others = [p for p in parents if p.get("controllerName") != CONTROLLER_NAME]
    ours_before = [p for p in parents if p.get("controllerName") == CONTROLLER_NAME]
    ours = []
    for parent in status.parents:
        previous = next(
            (p for p in ours_before if _same_ref(p.get("parentRef") or {}, parent.parent_ref)), {}
        )
        ours.append(
            {
                "parentRef": dict(parent.parent_ref),
                "controllerName": parent.controller_name,
                "conditions": conditions(parent.conditions, previous.get("conditions"), clock),
            }
        )
    return {"parents": others + ours}


def differs(wanted: Mapping[str, Any], obj: Mapping[str, Any]) -> bool:
    """Whether the object's status lacks any of `wanted` (an absent list counts as empty)."""
    current = obj.get("status")
    current = current if isinstance(current, dict) else {}
    return any((current.get(k) or []) != v for k, v in wanted.items())


def object_path(resource: Resource, key: str) -> str:
    """The object's path for a status key (`namespace/name`, or the bare name of a cluster-scoped kind)."""
    namespace, name = key.split("/", 1) if resource.namespaced else (None, key)
    return resource.collection_path(resource.versions[0], namespace) + f"/{name}"


class GatewayStatusWriter:
    """Writes the builder's Gateway API statuses of one source to the objects, while leading."""

    def __init__(
        self,
        api: KubeApi,
        bus: Bus,
        source: str,
        *,
        retry_cap: float = 30.0,
        clock: Clock = now,
        addresses: tuple[str, ...] = (),
    ) -> None:
        self.api = api
        self.bus = bus
        self.source = source
        self.retry_cap = retry_cap
        self.clock = clock
        self.addresses = addresses
        self._wanted: dict[tuple[str, str], ObjectStatus] = {}
        self._pending: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()

    async def lead(self) -> None:
        """Watch the status bucket and write statuses, until cancelled (the lease lost, or stopping).
        A failing watch (NATS away) is restarted after a pause."""
        backoff = Backoff(base=0.5, cap=self.retry_cap)
        while True:
            try:
                await self._lead_once()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("gateway status watch failed: %s", exc)
            await asyncio.sleep(backoff.next_delay())

    async def _lead_once(self) -> None:
        self._wanted.clear()
        self._pending.clear()
        reader = asyncio.create_task(self._read(), name="gateway status watch")
        try:
            backoff = Backoff(base=0.5, cap=self.retry_cap)
            while True:
                await self._wake.wait()
                self._wake.clear()
                if reader.done():
                    reader.result()  # raise what ended it
                if await self._write_pending():
                    backoff.reset()
                else:
                    await asyncio.sleep(backoff.next_delay())
                    self._wake.set()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _read(self) -> None:
        try:
            async for status in status_store.watch(self.bus, RESOURCES, self.source):
                if not (status.conditions or status.listeners or status.parents):
                    continue
                ref = (status.kind, status.key)
                self._wanted[ref] = status
                self._pending.add(ref)
                self._wake.set()
        finally:
            self._wake.set()  # a watch that ended (NATS away) is raised and restarted by _lead_once

    async def _write_pending(self) -> bool:
        """Patch every pending object whose status differs; False when a write failed."""
        pending, self._pending = self._pending, set()
        ok = True
        for ref in sorted(pending):
            status = self._wanted.get(ref)
            if status is None:
                continue
            kind, key = ref
            path = object_path(RESOURCES[kind], key)
            try:
                obj = await self.api.get(path)
                wanted = wanted_status(status, obj, self.clock, self.addresses)
                if not differs(wanted, obj):
                    continue
                await self.api.merge_patch(path + "/status", {"status": wanted})
            except NotFound:
                continue  # deleted meanwhile (or the CRD is gone): nothing to write
            except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                log.warning("cannot write the status of %s %s: %s", kind, key, exc)
                self._pending.add(ref)
                ok = False
                continue
            log.debug("wrote the status of %s %s", kind, key)
        return ok
