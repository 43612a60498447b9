"""Connection to NATS and handles on the JetStream objects of the layout (docs/design.md §4–5, §9).

A service never creates or reshapes an object: `connect` compares the server with the layout
(`layout.py`), waits while objects are missing (the layout job or `xdsbus layout --apply` creates them,
so start order does not matter), and names every other difference once, then runs with the server's
objects as they are."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os

import nats
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.errors import NoServersError
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from xdsbus import header_parsing, layout
from xdsbus.backoff import Backoff
from xdsbus.jetstream_acks import AckedPublisher
from xdsbus.layout import CHECKPOINTS_STORE as CHECKPOINTS_STORE
from xdsbus.layout import DEFAULT_LEASE_TTL, DEFAULT_PROXY_STATUS_TTL, Caps, LayoutSettings
from xdsbus.layout import EVENT_BODIES_STORE as EVENT_BODIES_STORE
from xdsbus.layout import LARGE_RESOURCES_STORE as LARGE_RESOURCES_STORE
from xdsbus.layout import LEASES_BUCKET as LEASES_BUCKET
from xdsbus.layout import LEDGER_BASES_STORE as LEDGER_BASES_STORE
from xdsbus.layout import LEDGER_CHANGES_STORE as LEDGER_CHANGES_STORE
from xdsbus.layout import LEDGER_STREAM as LEDGER_STREAM
from xdsbus.layout import LEDGER_SUBJECT_PREFIX as LEDGER_SUBJECT_PREFIX
from xdsbus.layout import RESOURCES_BUCKET as RESOURCES_BUCKET
from xdsbus.layout import RETENTION_BUCKET as RETENTION_BUCKET
from xdsbus.layout import STATUS_BUCKET as STATUS_BUCKET
from xdsbus.nats_options import DEFAULT_NATS_URL as DEFAULT_NATS_URL
from xdsbus.nats_options import ConnectionState, ErrorReporter, NatsOptions, error_callback
from xdsbus.transient import retry_transient

log = logging.getLogger(__name__)

# Most seconds between looks at a layout that lacks objects.
LAYOUT_RETRY_CAP = 5.0


class LayoutMissing(LookupError):
    """Objects of the layout are not on the server, and the caller would not wait for them."""


@dataclasses.dataclass(frozen=True)
class BusSettings:
    """The NATS URL(s), how to authenticate, and the layout the services expect (docs/design.md §9)."""

    url: str = DEFAULT_NATS_URL
    # Credentials and TLS (docs/design.md §10); None: `url` alone, without credentials.
    nats: NatsOptions | None = None
    replicas: int = 1
    duplicate_window: float = 120.0
    lease_ttl: float = DEFAULT_LEASE_TTL
    caps: Caps = dataclasses.field(default_factory=Caps)
    proxy_status_ttl: float = DEFAULT_PROXY_STATUS_TTL

    @classmethod
    def from_env(cls, url: str | None = None) -> BusSettings:
        """Settings from XDSBUS_* environment variables, with an explicit URL taking precedence."""
        expected = LayoutSettings.from_env()
        return cls(
            url=url or os.environ.get("XDSBUS_NATS_URL", DEFAULT_NATS_URL),
            nats=NatsOptions.from_env(url),
            replicas=expected.replicas,
            lease_ttl=expected.lease_ttl,
            caps=expected.caps,
            proxy_status_ttl=expected.proxy_status_ttl,
        )

    def options(self) -> NatsOptions:
        """How to connect: the credentials and TLS of the environment, or `url` alone."""
        return self.nats if self.nats is not None else NatsOptions.from_env(self.url, environ={})

    def layout(self) -> LayoutSettings:
        """The layout these settings describe."""
        return LayoutSettings(
            replicas=self.replicas,
            lease_ttl=self.lease_ttl,
            duplicate_window=self.duplicate_window,
            caps=self.caps,
            proxy_status_ttl=self.proxy_status_ttl,
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
    retention: KeyValue
    # The link to NATS (connected, since, reconnects), kept by `connect`'s callbacks: what health
    # endpoints and metrics export.
    connection: ConnectionState = dataclasses.field(default_factory=ConnectionState)
    _acks: AckedPublisher | None = dataclasses.field(default=None, repr=False)

    def acks(self) -> AckedPublisher:
        """The connection's pipelined JetStream publisher (xdsbus.jetstream_acks): cheaper per message
        than nats-py's publish_async (no semaphore wait, random token and future bookkeeping each), and
        an acknowledgement carrying an error fails its publish instead of never answering."""
        if self._acks is None:
            self._acks = AckedPublisher(self.nc)
        return self._acks

    async def close(self) -> None:
        """Flush pending publishes and close the connection; never waits long for a NATS that is gone."""
        if self.nc.is_closed:
            return
        self.connection.closed = True
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


async def check_layout(js: JetStreamContext, settings: BusSettings, *, name: str, attempts: int = 0) -> None:
    """Wait until every object of the layout exists (up to `attempts` looks, 0: forever; then
    `LayoutMissing`), and log each difference of its settings once, naming the object and the setting."""
    backoff = Backoff(base=0.2, cap=LAYOUT_RETRY_CAP)
    attempt = 0
    while True:
        attempt += 1
        differences = await layout.compare(js, settings.layout())
        missing = [d.spec.describe() for d in differences if d.missing]
        if not missing:
            break
        message = f"{', '.join(missing)} missing on the NATS server: run `xdsbus layout --apply`"
        if attempts and attempt >= attempts:
            raise LayoutMissing(message)
        delay = backoff.next_delay()
        log.warning("%s: %s; looking again in %.1fs", name, message, delay)
        await asyncio.sleep(delay)
    for difference in differences:
        log.warning(
            "%s: %s; running with the server's setting until `xdsbus layout --apply`",
            name,
            difference.describe(),
        )


async def open_bus(nc: Client, settings: BusSettings, connection: ConnectionState | None = None) -> Bus:
    """Handles on every object of the layout, which must exist (`check_layout`); `connection` is the
    state `connect`'s callbacks keep."""
    js = nc.jetstream(timeout=10)
    return Bus(
        nc=nc,
        js=js,
        settings=settings,
        resources=await js.key_value(RESOURCES_BUCKET),
        large_resources=await js.object_store(LARGE_RESOURCES_STORE),
        checkpoints=await js.object_store(CHECKPOINTS_STORE),
        ledger_changes=await js.object_store(LEDGER_CHANGES_STORE),
        ledger_bases=await js.object_store(LEDGER_BASES_STORE),
        event_bodies=await js.object_store(EVENT_BODIES_STORE),
        status=await js.key_value(STATUS_BUCKET),
        leases=await js.key_value(LEASES_BUCKET),
        retention=await js.key_value(RETENTION_BUCKET),
        connection=connection if connection is not None else ConnectionState(connected=nc.is_connected),
    )


async def apply_layout(url: str | NatsOptions, settings: LayoutSettings) -> list[layout.Difference]:
    """Connect, create and reshape the layout (`layout.apply`), disconnect; returns what cannot be
    changed in place. What `xdsbus layout --apply` does, for the harness that stands in for it."""
    options = NatsOptions.from_env(url, environ={}) if isinstance(url, str) else url
    nc = await nats.connect(
        **options.connect_kwargs(),
        name="xdsbus-layout",
        connect_timeout=2,
        max_reconnect_attempts=5,
        error_cb=error_callback("xdsbus-layout", options),
    )
    header_parsing.install(nc)
    try:
        return await layout.apply(nc.jetstream(timeout=10), settings)
    finally:
        await nc.close()


async def connect(settings: BusSettings, name: str, attempts: int = 0) -> Bus:
    """Connect (retrying while NATS is down, up to `attempts`; 0 means forever) and check the layout
    (`check_layout`, waiting for missing objects as long)."""
    backoff = Backoff(base=0.2, cap=5.0)
    attempt = 0
    options = settings.options()
    errors = ErrorReporter(name, options)
    while True:
        attempt += 1
        try:
            nc = await nats.connect(
                **options.connect_kwargs(),
                **options.keepalive_kwargs(),
                name=name,
                error_cb=errors.report,
                reconnected_cb=errors.reconnected,
                disconnected_cb=errors.disconnected,
                # nats-py retries a first connection as often as a lost one: a bounded caller (the CLI)
                # must get an answer, wrong credentials included.
                max_reconnect_attempts=attempts or -1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                allow_reconnect=True,
                # A publish that fills the client's buffer waits for a flush; unbounded (nats-py's
                # default), a connection lost mid-flush leaves that publish waiting forever.
                flush_timeout=10,
            )
            break
        except (OSError, NoServersError, TimeoutError) as exc:
            if attempts and attempt >= attempts:
                reason = errors.refusal or errors.last or str(exc) or type(exc).__name__
                raise ConnectionError(f"cannot connect to NATS at {options.describe()}: {reason}") from None
            delay = backoff.next_delay()
            log.warning("cannot reach NATS at %s (%s); retrying in %.1fs", options.describe(), exc, delay)
            await asyncio.sleep(delay)
    # Every received message's headers are parsed; nats-py's parser is a sixth of the edge's CPU in a
    # cold load (xdsbus.header_parsing).
    header_parsing.install(nc)
    await errors.connected()
    try:
        # A JetStream API request may time out while a cluster elects a leader: look again.
        js = nc.jetstream(timeout=10)
        await retry_transient(
            lambda: check_layout(js, settings, name=name, attempts=attempts),
            what="checking the NATS layout",
            within=120.0,
        )
        return await open_bus(nc, settings, errors.state)
    except BaseException:
        await nc.close()
        raise


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
