"""Connection to NATS and the JetStream objects of docs/design.md §4–5, created idempotently."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoServersError
from nats.js import JetStreamContext, api
from nats.js.errors import BadRequestError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from xdsbus.backoff import Backoff
from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX

log = logging.getLogger(__name__)

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

LEDGER_STREAM = "XDSBUS_LEDGER"
LEDGER_SUBJECT_PREFIX = "xdsbus.ledger"
RESOURCES_BUCKET = "xdsbus_resources"
LARGE_RESOURCES_STORE = "xdsbus_resources_large"
CHECKPOINTS_STORE = "xdsbus_checkpoints"
LEDGER_CHANGES_STORE = "xdsbus_ledger_changes"
# Ledger bases: the full manifest of a version every K versions (docs/design.md §5).
LEDGER_BASES_STORE = "xdsbus_ledger_bases"
# Event bodies too large for a message, by sha256 (claim check, docs/design.md §4).
EVENT_BODIES_STORE = "xdsbus_event_bodies"
STATUS_BUCKET = "xdsbus_status"
LEASES_BUCKET = "xdsbus_leases"

DAY = 24 * 3600.0


@dataclasses.dataclass(frozen=True)
class BusSettings:
    """How the JetStream objects are laid out; replicas is 1 locally and 3 in a cluster."""

    url: str = DEFAULT_NATS_URL
    replicas: int = 1
    events_max_age: float = 7 * DAY
    duplicate_window: float = 120.0
    lease_ttl: float = 6.0

    @classmethod
    def from_env(cls, url: str | None = None) -> BusSettings:
        """Settings from XDSBUS_* environment variables, with an explicit URL taking precedence."""
        return cls(
            url=url or os.environ.get("XDSBUS_NATS_URL", DEFAULT_NATS_URL),
            replicas=int(os.environ.get("XDSBUS_NATS_REPLICAS", "1")),
            events_max_age=float(os.environ.get("XDSBUS_EVENTS_MAX_AGE_SECONDS", str(7 * DAY))),
        )


@dataclasses.dataclass
class Bus:
    """An open NATS connection with handles on every stream, bucket and store xdsbus uses."""

    nc: Client
    js: JetStreamContext
    settings: BusSettings
    resources: KeyValue
    large_resources: ObjectStore
    checkpoints: ObjectStore
    ledger_changes: ObjectStore
    ledger_bases: ObjectStore
    event_bodies: ObjectStore
    status: KeyValue
    leases: KeyValue

    async def close(self) -> None:
        """Flush pending publishes and close the connection; never waits long for a NATS that is gone."""
        if self.nc.is_closed:
            return
        if self.nc.is_connected:
            try:
                await asyncio.wait_for(self.nc.drain(), timeout=5)
                return
            except (TimeoutError, NatsError):
                pass
        await self.nc.close()


def ledger_subject(scope: str) -> str:
    """`xdsbus.ledger.<scope>`."""
    return f"{LEDGER_SUBJECT_PREFIX}.{scope}"


async def _ensure_stream(js: JetStreamContext, config: api.StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError as exc:
        # 10058: the stream exists with another configuration. Adopt it as it is: one service started
        # with other settings (say, without XDSBUS_NATS_REPLICAS) must not reshape the operator's stream.
        if exc.err_code != 10058:
            raise
        log.info("stream %s exists with another configuration; using it as it is", config.name)


async def _ensure_kv(js: JetStreamContext, bucket: str, **params: object) -> KeyValue:
    try:
        return await js.key_value(bucket)
    except (NotFoundError, BadRequestError):
        return await js.create_key_value(bucket=bucket, **params)  # type: ignore[arg-type]


async def _ensure_object_store(js: JetStreamContext, bucket: str, replicas: int) -> ObjectStore:
    try:
        return await js.object_store(bucket)
    except (NotFoundError, BadRequestError):
        return await js.create_object_store(
            bucket, config=api.ObjectStoreConfig(bucket=bucket, replicas=replicas)
        )


async def ensure_layout(nc: Client, settings: BusSettings) -> Bus:
    """Create (or adopt) every stream, bucket and store; safe to call from every service at start."""
    js = nc.jetstream(timeout=10)
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=EVENTS_STREAM,
            subjects=[f"{EVENTS_SUBJECT_PREFIX}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            max_age=settings.events_max_age,
            duplicate_window=settings.duplicate_window,
            num_replicas=settings.replicas,
        ),
    )
    await _ensure_stream(
        js,
        api.StreamConfig(
            name=LEDGER_STREAM,
            subjects=[f"{LEDGER_SUBJECT_PREFIX}.>"],
            storage=api.StorageType.FILE,
            retention=api.RetentionPolicy.LIMITS,
            # Kept without an age limit: a quiet scope must never lose its head version.
            num_replicas=settings.replicas,
            allow_direct=True,
        ),
    )
    r = settings.replicas
    return Bus(
        nc=nc,
        js=js,
        settings=settings,
        resources=await _ensure_kv(js, RESOURCES_BUCKET, history=1, replicas=r, max_value_size=-1),
        large_resources=await _ensure_object_store(js, LARGE_RESOURCES_STORE, r),
        checkpoints=await _ensure_object_store(js, CHECKPOINTS_STORE, r),
        ledger_changes=await _ensure_object_store(js, LEDGER_CHANGES_STORE, r),
        ledger_bases=await _ensure_object_store(js, LEDGER_BASES_STORE, r),
        event_bodies=await _ensure_object_store(js, EVENT_BODIES_STORE, r),
        status=await _ensure_kv(js, STATUS_BUCKET, history=1, replicas=r),
        leases=await _ensure_kv(js, LEASES_BUCKET, history=1, replicas=r, ttl=settings.lease_ttl),
    )


async def connect(settings: BusSettings, name: str, attempts: int = 0) -> Bus:
    """Connect (retrying while NATS is down, up to `attempts`; 0 means forever) and ensure the layout."""
    backoff = Backoff(base=0.2, cap=5.0)
    attempt = 0
    while True:
        attempt += 1
        try:
            nc = await nats.connect(
                settings.url,
                name=name,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
            )
            break
        except (OSError, NoServersError, TimeoutError) as exc:
            if attempts and attempt >= attempts:
                raise
            delay = backoff.next_delay()
            log.warning("cannot reach NATS at %s (%s); retrying in %.1fs", settings.url, exc, delay)
            await asyncio.sleep(delay)
    return await ensure_layout(nc, settings)


async def connect_unless_stopped(settings: BusSettings, name: str, stop: asyncio.Event) -> Bus | None:
    """`connect`, retrying while NATS is down, unless `stop` is set first: then None, so a service asked
    to stop while NATS is unreachable exits instead of waiting for it."""
    connecting = asyncio.ensure_future(connect(settings, name=name))
    stopping = asyncio.ensure_future(stop.wait())
    await asyncio.wait({connecting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if connecting.done():
        return connecting.result()
    connecting.cancel()
    try:
        await connecting
    except asyncio.CancelledError:
        pass
    return None
