"""A protocol-faithful fake Eureka server for tests: aiohttp.web in the test's own event loop.

The wire protocol follows docs/registries.md §3 (Netflix eureka-core's
``ApplicationsResource``/``ApplicationResource``/``InstanceResource`` and ``AbstractInstanceRegistry``), so
py-eureka-client 0.13.3 and our watcher talk to it unchanged. Tests drive it through HTTP (a real client
registering) or through synchronous driver methods that go through the same registry code.

Fidelity choices, and why:

* Everything lives under one prefix, ``/eureka`` (Spring Cloud) or ``/eureka/v2`` (Netflix standalone);
  the other answers 404, as a real server would.
* ``GET /apps`` (also ``/apps/``, which py-eureka-client asks for), ``/apps/delta``, ``/apps/{APP}``,
  ``/apps/{APP}/{id}``, ``/instances/{id}``, ``/vips/{vip}``, ``/svips/{svip}``. JSON only when ``Accept``
  contains ``application/json``, XML otherwise (no Accept included); ``force_xml`` makes it ignore Accept
  like some servers and proxies. gzip when asked for. Unknown app/instance: 404.
* Documents are built field for field like ``EurekaJacksonCodec``: ``port``/``securePort`` as
  ``{"$": n, "@enabled": "true"}``, empty metadata as ``{"@class": "java.util.Collections$EmptyMap"}``, the
  ``@Auto`` fields as strings, ``instance``/``application`` always arrays, ``overriddenStatus`` in JSON and
  ``overriddenstatus`` in XML. The XML is generated from the same tree (``@x`` → attribute, ``$`` → text).
* ``apps__hashcode`` is ``Applications.getReconcileHashCode``: counts of instance statuses sorted by
  status (``DOWN_1_UP_2_``). Full documents carry ``versions__delta`` "1"; deltas a counter that moves
  with every change.
* The delta is built like ``getApplicationDeltas``: a recently-changed queue (registration ADDED, status
  override and its removal MODIFIED, cancel DELETED) kept for ``retention`` seconds (the real 3 minutes by
  default); entries hold the instance object itself (the real queue holds the lease), so an entry shows the
  instance's current state, and a later entry for the same instance id replaces an earlier one in the
  output (``Application.addInstance`` is keyed by id). The delta's hashcode is that of the whole registry.
  Heartbeats do not enter the queue.
* Writes follow the resources: ``POST /apps/{APP}`` 204 (400 when instanceId, hostName, ipAddr or the
  data center name is missing, or the body's app differs from the path's), re-registration replaces the
  instance and keeps a status override; ``PUT /apps/{APP}/{id}`` (heartbeat) 200 or 404 (so the client
  re-registers); ``DELETE /apps/{APP}/{id}`` 200 or 404; ``PUT .../status?value=S`` sets an override
  (status S, action MODIFIED); ``DELETE .../status[?value=S]`` removes it (status S, default UNKNOWN).
  App names are upper-cased, as ``ApplicationResource`` does.
* Effective status follows the override rules in order: an instance reporting DOWN or STARTING keeps it,
  else an override wins, else the reported status.

Not faithful (on purpose, to keep the fake small): no lease expiry or eviction (use ``cancel``), no
self-preservation, no response cache (changes show at once; the real server lags up to 30 s), no remote
regions (``regions=`` is ignored), no peer replication, no ``lastDirtyTimestamp`` conflict handling (409),
no ``/apps/{APP}/{id}/metadata``, no authentication.

Fault injection: ``go_down()``/``come_back()`` (connection refused, then the same port with the same
state), ``failing`` (every request answers that HTTP status), ``delta_disabled`` (403 on the delta, as with
``shouldDisableDelta``), ``corrupt_delta_hashcode()`` (the next deltas carry a wrong hashcode),
``forget_recent_changes()`` (the window passed: changes vanish from the delta but not from the registry),
``garbage()`` (an instance with malformed fields). Driver methods must run on the server's event loop
thread.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter, deque
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self
from xml.etree import ElementTree

from aiohttp import web

JSON = dict[str, Any]

STATUSES = ("UP", "DOWN", "STARTING", "OUT_OF_SERVICE", "UNKNOWN")
DEFAULT_DATA_CENTER_CLASS = "com.netflix.appinfo.InstanceInfo$DefaultDataCenterInfo"
EMPTY_MAP_CLASS = "java.util.Collections$EmptyMap"
# AbstractInstanceRegistry: retentionTimeInMSInDeltaQueue = 180000.
DEFAULT_RETENTION = 180.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def reconcile_hashcode(statuses: Iterable[str]) -> str:
    """``Applications.getReconcileHashCode``: ``STATUS_COUNT_`` per status, sorted by status name."""
    counts = Counter(statuses)
    return "".join(f"{status}_{counts[status]}_" for status in sorted(counts))


@dataclasses.dataclass(eq=False)
class Instance:
    """The server's InstanceInfo of one registered instance."""

    app: str
    instance_id: str
    host_name: str
    ip: str
    port: int = 8080
    port_enabled: bool = True
    secure_port: int = 443
    secure_port_enabled: bool = False
    # What the instance registered with, and the admin override ("UNKNOWN" = none).
    reported_status: str = "UP"
    overridden_status: str = "UNKNOWN"
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    vip_address: str = ""
    secure_vip_address: str = ""
    home_page_url: str = ""
    status_page_url: str = ""
    health_check_url: str = ""
    data_center_class: str = DEFAULT_DATA_CENTER_CLASS
    data_center_name: str = "MyOwn"
    data_center_metadata: dict[str, str] = dataclasses.field(default_factory=dict)
    country_id: int = 1
    renewal_interval: int = 30
    duration: int = 90
    registration_ts: int = dataclasses.field(default_factory=_now_ms)
    last_renewal_ts: int = dataclasses.field(default_factory=_now_ms)
    service_up_ts: int = dataclasses.field(default_factory=_now_ms)
    last_updated_ts: int = dataclasses.field(default_factory=_now_ms)
    last_dirty_ts: int = dataclasses.field(default_factory=_now_ms)
    # Raw field overrides for malformed instances (``garbage``): a value of None removes the field.
    garbage: JSON = dataclasses.field(default_factory=dict)

    @property
    def status(self) -> str:
        """The effective status (InstanceStatusOverrideRule order: DownOrStarting, OverrideExists,
        then the instance's own)."""
        if self.reported_status in ("DOWN", "STARTING"):
            return self.reported_status
        if self.overridden_status != "UNKNOWN":
            return self.overridden_status
        return self.reported_status

    def to_json(self, action: str) -> JSON:
        """The instance as EurekaJacksonCodec writes it."""
        data_center: JSON = {"@class": self.data_center_class, "name": self.data_center_name}
        if self.data_center_metadata:
            data_center["metadata"] = dict(self.data_center_metadata)
        tree: JSON = {
            "instanceId": self.instance_id,
            "hostName": self.host_name,
            "app": self.app,
            "ipAddr": self.ip,
            "status": self.status,
            "overriddenStatus": self.overridden_status,
            "port": {"$": self.port, "@enabled": "true" if self.port_enabled else "false"},
            "securePort": {
                "$": self.secure_port,
                "@enabled": "true" if self.secure_port_enabled else "false",
            },
            "countryId": self.country_id,
            "dataCenterInfo": data_center,
            "leaseInfo": {
                "renewalIntervalInSecs": self.renewal_interval,
                "durationInSecs": self.duration,
                "registrationTimestamp": self.registration_ts,
                "lastRenewalTimestamp": self.last_renewal_ts,
                "evictionTimestamp": 0,
                "serviceUpTimestamp": self.service_up_ts,
            },
            "metadata": dict(self.metadata) if self.metadata else {"@class": EMPTY_MAP_CLASS},
            "homePageUrl": self.home_page_url,
            "statusPageUrl": self.status_page_url,
            "healthCheckUrl": self.health_check_url,
            "vipAddress": self.vip_address,
            "secureVipAddress": self.secure_vip_address,
            "isCoordinatingDiscoveryServer": "false",
            "lastUpdatedTimestamp": str(self.last_updated_ts),
            "lastDirtyTimestamp": str(self.last_dirty_ts),
            "actionType": action,
        }
        for key, value in self.garbage.items():
            if value is None:
                tree.pop(key, None)
            else:
                tree[key] = value
        return tree


@dataclasses.dataclass(frozen=True)
class _Change:
    """An entry of the recently-changed queue."""

    at: float
    action: str
    instance: Instance


@dataclasses.dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    accept: str | None


class BadRequest(ValueError):
    """A registration the real server refuses with 400."""


class FakeEureka:
    """A Eureka server on 127.0.0.1 serving one registry under ``prefix``."""

    def __init__(
        self, prefix: str = "/eureka", *, port: int = 0, retention: float = DEFAULT_RETENTION
    ) -> None:
        self.prefix = prefix.rstrip("/")
        self.port = port
        self.retention = retention
        # Answer XML whatever Accept says.
        self.force_xml = False
        # When set, every request answers this HTTP status.
        self.failing: int | None = None
        # 403 on /apps/delta, as a server with delta disabled (or not ready yet) does.
        self.delta_disabled = False
        self.requests: deque[RequestRecord] = deque(maxlen=10_000)
        self._apps: dict[str, dict[str, Instance]] = {}
        self._changes: deque[_Change] = deque()
        self._version = 0
        self._corrupt_deltas = 0
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------------------------ lifecycle

    async def start(self) -> Self:
        """Serve (a free port the first time, the same port on a restart)."""
        if self._runner is not None:
            return self
        app = web.Application()
        p = self.prefix
        app.router.add_get(p + "/apps", self._get_apps)
        app.router.add_get(p + "/apps/", self._get_apps)
        app.router.add_get(p + "/apps/delta", self._get_delta)
        app.router.add_get(p + "/apps/{app}", self._get_app)
        app.router.add_post(p + "/apps/{app}", self._post_register)
        app.router.add_get(p + "/apps/{app}/{id}", self._get_instance)
        app.router.add_put(p + "/apps/{app}/{id}", self._put_heartbeat)
        app.router.add_delete(p + "/apps/{app}/{id}", self._delete_cancel)
        app.router.add_put(p + "/apps/{app}/{id}/status", self._put_status)
        app.router.add_delete(p + "/apps/{app}/{id}/status", self._delete_status)
        app.router.add_get(p + "/instances/{id}", self._get_instance_by_id)
        app.router.add_get(p + "/vips/{vip}", self._get_vip)
        app.router.add_get(p + "/svips/{vip}", self._get_svip)
        app.middlewares.append(self._middleware)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port)
        await site.start()
        self._runner = runner
        if not self.port:
            self.port = int(runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        """Stop serving; the registry is kept."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def go_down(self) -> None:
        """An outage: connections are refused until ``come_back``."""
        await self.stop()

    async def come_back(self) -> None:
        """Serve again on the same port with the registry as it was (plus driver changes meanwhile)."""
        await self.start()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """The service URL clients are given, e.g. ``http://127.0.0.1:41234/eureka/``."""
        if not self.port:
            raise RuntimeError("FakeEureka is not started")
        return f"http://127.0.0.1:{self.port}{self.prefix}/"

    # ------------------------------------------------------------------------------------- driver

    def register(
        self,
        app: str,
        instance_id: str,
        ip: str,
        port: int,
        status: str = "UP",
        metadata: dict[str, str] | None = None,
        **fields: Any,
    ) -> Instance:
        """Register (or re-register) an instance, as ``POST /apps/{APP}`` does; ``fields`` are further
        Instance attributes (``secure_port_enabled=True``, ``host_name=...``)."""
        instance = Instance(
            app=app.upper(),
            instance_id=instance_id,
            host_name=fields.pop("host_name", ip),
            ip=ip,
            port=port,
            reported_status=status,
            metadata=dict(metadata or {}),
            **fields,
        )
        self._register(instance)
        return instance

    def cancel(self, app: str, instance_id: str) -> bool:
        """Remove an instance, as ``DELETE /apps/{APP}/{id}`` does; False if there was none."""
        instances = self._apps.get(app.upper(), {})
        instance = instances.pop(instance_id, None)
        if instance is None:
            return False
        if not instances:
            del self._apps[app.upper()]
        self._record("DELETED", instance)
        return True

    def set_status(self, app: str, instance_id: str, status: str) -> None:
        """The instance reports a new status: it re-registers with it, as Eureka's Java client does
        (InstanceInfoReplicator) — an ADDED change."""
        instance = self._instance(app, instance_id)
        instance.reported_status = status
        instance.last_dirty_ts = instance.last_updated_ts = _now_ms()
        self._record("ADDED", instance)

    def override_status(self, app: str, instance_id: str, status: str) -> None:
        """An admin status override, as ``PUT .../status?value=`` — a MODIFIED change."""
        instance = self._instance(app, instance_id)
        instance.overridden_status = status
        instance.reported_status = status
        instance.last_updated_ts = _now_ms()
        self._record("MODIFIED", instance)

    def clear_override(self, app: str, instance_id: str, status: str = "UNKNOWN") -> None:
        """Remove an override, as ``DELETE .../status[?value=]`` — a MODIFIED change."""
        instance = self._instance(app, instance_id)
        instance.overridden_status = "UNKNOWN"
        instance.reported_status = status
        instance.last_updated_ts = _now_ms()
        self._record("MODIFIED", instance)

    def garbage(self, app: str, instance_id: str, **raw_fields: Any) -> Instance:
        """Register an instance whose document fields are replaced by ``raw_fields`` (JSON names, e.g.
        ``ipAddr="not-an-ip"``, ``port={"$": "x", "@enabled": "true"}``; None drops a field): the
        malformed data a registry fed by other implementations can hold."""
        instance = Instance(app=app.upper(), instance_id=instance_id, host_name="garbage", ip="0.0.0.0")
        instance.garbage = dict(raw_fields)
        self._register(instance)
        return instance

    def corrupt_delta_hashcode(self, times: int = 1) -> None:
        """The next ``times`` deltas carry a hashcode that matches no registry."""
        self._corrupt_deltas += times

    def forget_recent_changes(self) -> None:
        """Drop the recently-changed queue, as if the retention window had passed: a client that missed
        those changes now sees them only through the hashcode."""
        self._changes.clear()

    @property
    def hashcode(self) -> str:
        """The registry's reconcile hashcode."""
        return reconcile_hashcode(i.status for instances in self._apps.values() for i in instances.values())

    def instances(self, app: str) -> dict[str, Instance]:
        return dict(self._apps.get(app.upper(), {}))

    # ----------------------------------------------------------------------------------- registry

    def _instance(self, app: str, instance_id: str) -> Instance:
        try:
            return self._apps[app.upper()][instance_id]
        except KeyError:
            raise KeyError(f"no instance {app.upper()}/{instance_id}") from None

    def _register(self, instance: Instance) -> None:
        instances = self._apps.setdefault(instance.app, {})
        existing = instances.get(instance.instance_id)
        if existing is not None:
            # Re-registration keeps the lease's registration time and any status override.
            instance.registration_ts = existing.registration_ts
            instance.overridden_status = existing.overridden_status
        instances[instance.instance_id] = instance
        self._record("ADDED", instance)

    def _record(self, action: str, instance: Instance) -> None:
        self._version += 1
        self._changes.append(_Change(time.monotonic(), action, instance))

    def _recent(self) -> list[_Change]:
        horizon = time.monotonic() - self.retention
        while self._changes and self._changes[0].at < horizon:
            self._changes.popleft()
        return list(self._changes)

    # ---------------------------------------------------------------------------------- documents

    def _applications(self, apps: dict[str, list[tuple[str, Instance]]], version: str, hashcode: str) -> JSON:
        return {
            "applications": {
                "versions__delta": version,
                "apps__hashcode": hashcode,
                "application": [
                    {"name": name, "instance": [inst.to_json(action) for action, inst in entries]}
                    for name, entries in apps.items()
                    if entries
                ],
            }
        }

    def full_document(self, keep: Any = None) -> JSON:
        apps = {
            name: [("ADDED", i) for i in instances.values() if keep is None or keep(i)]
            for name, instances in self._apps.items()
        }
        return self._applications(apps, "1", self.hashcode)

    def delta_document(self) -> JSON:
        apps: dict[str, dict[str, tuple[str, Instance]]] = {}
        for change in self._recent():
            entries = apps.setdefault(change.instance.app, {})
            # Application.addInstance: the later change of an instance id replaces (and moves) the earlier.
            entries.pop(change.instance.instance_id, None)
            entries[change.instance.instance_id] = (change.action, change.instance)
        hashcode = self.hashcode
        if self._corrupt_deltas:
            self._corrupt_deltas -= 1
            hashcode = "CORRUPT_0_" + hashcode
        return self._applications(
            {name: list(entries.values()) for name, entries in apps.items()}, str(self._version), hashcode
        )

    # ----------------------------------------------------------------------------------- handlers

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append(RequestRecord(request.method, request.path, request.headers.get("Accept")))
        if self.failing is not None:
            return web.Response(status=self.failing, text="injected failure")
        response: web.StreamResponse = await handler(request)
        return response

    def _respond(self, request: web.Request, tree: JSON) -> web.Response:
        if not self.force_xml and "application/json" in request.headers.get("Accept", ""):
            response = web.Response(body=json.dumps(tree).encode(), content_type="application/json")
        else:
            ((root, value),) = tree.items()
            xml = ElementTree.tostring(to_xml(root, value), encoding="unicode")
            body = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>' + xml
            response = web.Response(body=body.encode(), content_type="application/xml")
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            response.enable_compression()
        return response

    async def _get_apps(self, request: web.Request) -> web.Response:
        return self._respond(request, self.full_document())

    async def _get_delta(self, request: web.Request) -> web.Response:
        if self.delta_disabled:
            return web.Response(status=403)
        return self._respond(request, self.delta_document())

    async def _get_app(self, request: web.Request) -> web.Response:
        instances = self._apps.get(request.match_info["app"].upper())
        if not instances:
            return web.Response(status=404)
        name = request.match_info["app"].upper()
        return self._respond(
            request,
            {"application": {"name": name, "instance": [i.to_json("ADDED") for i in instances.values()]}},
        )

    async def _get_instance(self, request: web.Request) -> web.Response:
        instance = self._apps.get(request.match_info["app"].upper(), {}).get(request.match_info["id"])
        if instance is None:
            return web.Response(status=404)
        return self._respond(request, {"instance": instance.to_json("ADDED")})

    async def _get_instance_by_id(self, request: web.Request) -> web.Response:
        for instances in self._apps.values():
            if request.match_info["id"] in instances:
                return self._respond(
                    request, {"instance": instances[request.match_info["id"]].to_json("ADDED")}
                )
        return web.Response(status=404)

    async def _get_vip(self, request: web.Request) -> web.Response:
        vip = request.match_info["vip"]
        return self._respond(request, self.full_document(lambda i: vip in i.vip_address.split(",")))

    async def _get_svip(self, request: web.Request) -> web.Response:
        vip = request.match_info["vip"]
        return self._respond(request, self.full_document(lambda i: vip in i.secure_vip_address.split(",")))

    async def _post_register(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            instance = _parse_registration(request.match_info["app"].upper(), body)
        except BadRequest as exc:
            return web.Response(status=400, text=str(exc))
        self._register(instance)
        return web.Response(status=204)

    async def _put_heartbeat(self, request: web.Request) -> web.Response:
        instance = self._apps.get(request.match_info["app"].upper(), {}).get(request.match_info["id"])
        if instance is None:
            # InstanceResource.renewLease: 404 tells the client to register again.
            return web.Response(status=404)
        instance.last_renewal_ts = _now_ms()
        return web.Response(status=200)

    async def _delete_cancel(self, request: web.Request) -> web.Response:
        found = self.cancel(request.match_info["app"], request.match_info["id"])
        return web.Response(status=200 if found else 404)

    async def _put_status(self, request: web.Request) -> web.Response:
        status = request.query.get("value", "")
        if status not in STATUSES:
            return web.Response(status=400, text=f"bad status {status!r}")
        try:
            self.override_status(request.match_info["app"], request.match_info["id"], status)
        except KeyError:
            return web.Response(status=404)
        return web.Response(status=200)

    async def _delete_status(self, request: web.Request) -> web.Response:
        status = request.query.get("value", "UNKNOWN")
        try:
            self.clear_override(
                request.match_info["app"],
                request.match_info["id"],
                status if status in STATUSES else "UNKNOWN",
            )
        except KeyError:
            return web.Response(status=404)
        return web.Response(status=200)


# ------------------------------------------------------------------------------------------ codecs


def _xml_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def to_xml(tag: str, value: Any) -> ElementTree.Element:
    """The XML of a Jackson-shaped tree: ``@x`` keys are attributes, ``$`` the text, lists repeat the
    element; ``overriddenStatus`` is spelled ``overriddenstatus`` as in the XStream codec."""
    element = ElementTree.Element("overriddenstatus" if tag == "overriddenStatus" else tag)
    if isinstance(value, dict):
        for key, child in value.items():
            if key.startswith("@"):
                element.set(key[1:], _xml_text(child))
            elif key == "$":
                element.text = _xml_text(child)
            elif isinstance(child, list):
                element.extend(to_xml(key, item) for item in child)
            else:
                element.append(to_xml(key, child))
    elif value is not None:
        element.text = _xml_text(value)
    return element


def _from_xml(element: ElementTree.Element) -> Any:
    children = list(element)
    if not children and not element.attrib:
        return element.text or ""
    tree: JSON = {f"@{k}": v for k, v in element.attrib.items()}
    if not children:
        tree["$"] = element.text or ""
    for child in children:
        tag = "overriddenStatus" if child.tag == "overriddenstatus" else child.tag
        tree[tag] = _from_xml(child)
    return tree


def _port(value: Any, default_enabled: bool) -> tuple[int, bool]:
    if isinstance(value, dict):
        enabled = str(value.get("@enabled", default_enabled)).lower() == "true"
        value = value.get("$")
    else:
        enabled = default_enabled
    try:
        return int(value), enabled
    except (TypeError, ValueError):
        raise BadRequest(f"bad port {value!r}") from None


def _parse_registration(app: str, body: bytes) -> Instance:
    """An InstanceInfo from a registration body (``{"instance": {...}}`` or ``<instance>``), with the
    checks of ``ApplicationResource.addInstance``."""
    try:
        if body.lstrip()[:1] == b"<":
            root = ElementTree.fromstring(body)
            raw = _from_xml(root) if root.tag == "instance" else None
        else:
            raw = json.loads(body).get("instance")
    except (ValueError, ElementTree.ParseError, AttributeError) as exc:
        raise BadRequest(f"unreadable instance: {exc}") from None
    if not isinstance(raw, dict):
        raise BadRequest("no instance")

    def text(key: str) -> str:
        value = raw.get(key)
        return "" if value is None or isinstance(value, dict | list) else str(value)

    for key, what in (("instanceId", "instanceId"), ("hostName", "hostname"), ("ipAddr", "ip address")):
        if not text(key):
            raise BadRequest(f"Missing {what}")
    if text("app").upper() != app:
        raise BadRequest("Mismatched appName, expecting " + app + " but was " + text("app").upper())
    dc = raw.get("dataCenterInfo")
    if not isinstance(dc, dict) or not dc.get("name"):
        raise BadRequest("Missing dataCenterInfo Name")
    port, port_enabled = _port(raw.get("port", 7001), True)
    secure_port, secure_enabled = _port(raw.get("securePort", 7002), False)
    lease: JSON = raw["leaseInfo"] if isinstance(raw.get("leaseInfo"), dict) else {}
    metadata: JSON = raw["metadata"] if isinstance(raw.get("metadata"), dict) else {}
    status = text("status").upper() or "UP"
    now = _now_ms()
    return Instance(
        app=app,
        instance_id=text("instanceId"),
        host_name=text("hostName"),
        ip=text("ipAddr"),
        port=port,
        port_enabled=port_enabled,
        secure_port=secure_port,
        secure_port_enabled=secure_enabled,
        reported_status=status if status in STATUSES else "UNKNOWN",
        metadata={str(k): str(v) for k, v in metadata.items() if not str(k).startswith("@")},
        vip_address=text("vipAddress"),
        secure_vip_address=text("secureVipAddress"),
        home_page_url=text("homePageUrl"),
        status_page_url=text("statusPageUrl"),
        health_check_url=text("healthCheckUrl"),
        data_center_class=str(dc.get("@class", DEFAULT_DATA_CENTER_CLASS)),
        data_center_name=str(dc["name"]),
        data_center_metadata={str(k): str(v) for k, v in dc.get("metadata", {}).items()}
        if isinstance(dc.get("metadata"), dict)
        else {},
        country_id=int(raw.get("countryId", 1) or 1),
        renewal_interval=int(lease.get("renewalIntervalInSecs", 30) or 30),
        duration=int(lease.get("durationInSecs", 90) or 90),
        registration_ts=now,
        last_renewal_ts=now,
        service_up_ts=now,
        last_updated_ts=now,
        last_dirty_ts=int(text("lastDirtyTimestamp") or now),
    )
