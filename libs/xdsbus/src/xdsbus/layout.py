"""The JetStream layout (docs/design.md §4, §5, §9): every stream, key-value bucket and object store, with
its settings and size cap; how the server's objects differ from it; and bringing the server to it.

Only `xdsbus layout --apply` (and the harness that stands in for it in tests) creates or reshapes
anything. Services compare at start and name every difference (`bus.connect`)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError

from xdsbus.events import EVENTS_STREAM, EVENTS_SUBJECT_PREFIX
from xdsbus.transient import retry_transient

LEDGER_STREAM = "XDSBUS_LEDGER"
LEDGER_SUBJECT_PREFIX = "xdsbus.ledger"
RESOURCES_BUCKET = "xdsbus_resources"
LARGE_RESOURCES_STORE = "xdsbus_resources_large"
CHECKPOINTS_STORE = "xdsbus_checkpoints"
LEDGER_CHANGES_STORE = "xdsbus_ledger_changes"
# Full manifests of past versions that readers start from (docs/design.md §5, bases).
LEDGER_BASES_STORE = "xdsbus_ledger_bases"
# Event bodies too large for a message, by sha256 (claim check, docs/design.md §4).
EVENT_BODIES_STORE = "xdsbus_event_bodies"
STATUS_BUCKET = "xdsbus_status"
LEASES_BUCKET = "xdsbus_leases"
# Each scope's checkpoint floor: the event log is purged only below the lowest (docs/design.md §4).
RETENTION_BUCKET = "xdsbus_retention"
# Each edge's proxies' sync state, one key per proxy and edge; entries of a dead edge age out
# (docs/proxy-status.md).
PROXIES_BUCKET = "xdsbus_proxies"
# Seconds one object is tried again through transient faults before `apply` gives up on it: a cluster
# that just started elects its meta leader within that.
APPLY_RETRY_WITHIN = 60.0

MiB = 1 << 20
GiB = 1 << 30


class Kind(enum.StrEnum):
    STREAM = "stream"
    KV = "KV"
    OBJECT_STORE = "object store"


@dataclasses.dataclass(frozen=True)
class Caps:
    """max_bytes of every object. The defaults add up to about 7.5 GiB, under the 10G of JetStream file
    storage deploy/nats gives each server: the server reserves every cap when the object is created."""

    events: int = 2 * GiB
    ledger: int = 1 * GiB
    resources: int = 1 * GiB
    resources_large: int = 1 * GiB
    checkpoints: int = 1 * GiB
    ledger_changes: int = 256 * MiB
    ledger_bases: int = 512 * MiB
    event_bodies: int = 512 * MiB
    status: int = 256 * MiB
    leases: int = 8 * MiB
    retention: int = 8 * MiB
    proxies: int = 128 * MiB

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Caps:
        """Each cap from `XDSBUS_<NAME>_MAX_BYTES` (e.g. XDSBUS_EVENTS_MAX_BYTES), else its default."""
        values = {}
        for field in dataclasses.fields(cls):
            text = environ.get(cap_variable(field.name))
            if text:
                values[field.name] = _positive_int(cap_variable(field.name), text)
        return cls(**values)


def cap_variable(field: str) -> str:
    """The environment variable of one cap: `events` -> XDSBUS_EVENTS_MAX_BYTES."""
    return f"XDSBUS_{field.upper()}_MAX_BYTES"


def _positive_int(name: str, text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number of bytes, not {text!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be at least 1, not {value}")
    return value


# Seconds a lease lasts without renewal; holders renew every third of it. Longer than a Raft election
# (a few seconds), so a holder keeps its lease while the leases bucket elects a leader instead of losing
# it and resyncing (docs/operating-on-a-cluster.md); a holder that died is replaced after this long.
DEFAULT_LEASE_TTL = 15.0
# Seconds a proxy's entry in xdsbus_proxies lives unless its edge writes it again; edges rewrite each
# entry every third of it, so only the entries of an edge that died (or lost NATS) vanish.
DEFAULT_PROXY_STATUS_TTL = 30.0


@dataclasses.dataclass(frozen=True)
class LayoutSettings:
    """What the layout depends on: replicas (1 locally, 3 in a cluster), the lease TTL (a bucket
    setting, docs/design.md §4), the event log's duplicate window and the size caps."""

    replicas: int = 1
    lease_ttl: float = DEFAULT_LEASE_TTL
    duplicate_window: float = 120.0
    caps: Caps = Caps()
    proxy_status_ttl: float = DEFAULT_PROXY_STATUS_TTL

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> LayoutSettings:
        """XDSBUS_NATS_REPLICAS, XDSBUS_LEASE_TTL, XDSBUS_PROXY_STATUS_TTL and the XDSBUS_*_MAX_BYTES
        caps, else the defaults."""
        return cls(
            replicas=_positive_int("XDSBUS_NATS_REPLICAS", environ.get("XDSBUS_NATS_REPLICAS") or "1"),
            lease_ttl=float(environ.get("XDSBUS_LEASE_TTL") or DEFAULT_LEASE_TTL),
            caps=Caps.from_env(environ),
            proxy_status_ttl=float(environ.get("XDSBUS_PROXY_STATUS_TTL") or DEFAULT_PROXY_STATUS_TTL),
        )


@dataclasses.dataclass(frozen=True)
class Setting:
    """One compared setting of an object's stream configuration (`field` of api.StreamConfig)."""

    field: str
    want: Any
    # Whether update_stream can change it in place; storage and retention cannot.
    reshapeable: bool = True


@dataclasses.dataclass(frozen=True)
class Spec:
    """One object of the layout."""

    kind: Kind
    name: str
    settings: tuple[Setting, ...]
    # Creates the object with its kind's own call (so that its KV or Object Store conventions hold);
    # `apply` then reshapes what that call does not set.
    create: Callable[[JetStreamContext], Any]

    @property
    def stream(self) -> str:
        """The stream behind the object."""
        if self.kind is Kind.KV:
            return f"KV_{self.name}"
        if self.kind is Kind.OBJECT_STORE:
            return f"OBJ_{self.name}"
        return self.name

    def describe(self) -> str:
        return f"{self.kind} {self.name}"


@dataclasses.dataclass(frozen=True)
class Difference:
    """How the server's object differs from its spec: missing altogether (`setting` empty), or one setting."""

    spec: Spec
    setting: str = ""
    have: Any = None
    want: Any = None
    reshapeable: bool = True

    @property
    def missing(self) -> bool:
        return not self.setting

    def describe(self) -> str:
        if self.missing:
            return f"{self.spec.describe()} is missing"
        fix = "" if self.reshapeable else " (cannot be changed in place)"
        return f"{self.spec.describe()}: {self.setting} is {self.have!r}, the layout wants {self.want!r}{fix}"


def _common(settings: LayoutSettings, cap: int) -> tuple[Setting, ...]:
    return (
        Setting("storage", api.StorageType.FILE.value, reshapeable=False),
        Setting("num_replicas", settings.replicas),
        Setting("max_bytes", cap),
        # Never drop stored data to make room: a full object refuses new writes instead.
        Setting("discard", api.DiscardPolicy.NEW.value),
    )


def _stream(name: str, subjects: list[str], settings: LayoutSettings, cap: int, *extra: Setting) -> Spec:
    def create(js: JetStreamContext) -> Any:
        return js.add_stream(
            api.StreamConfig(
                name=name,
                subjects=subjects,
                storage=api.StorageType.FILE,
                retention=api.RetentionPolicy.LIMITS,
                num_replicas=settings.replicas,
                max_bytes=cap,
                discard=api.DiscardPolicy.NEW,
            )
        )

    return Spec(
        Kind.STREAM,
        name,
        (
            *_common(settings, cap),
            Setting("retention", api.RetentionPolicy.LIMITS.value, reshapeable=False),
            # No age limit (docs/design.md §4): retention follows checkpoints.
            Setting("max_age", 0.0),
            *extra,
        ),
        create,
    )


def _kv(
    name: str, settings: LayoutSettings, cap: int, ttl: float = 0.0, max_value: int = 0, direct: bool = False
) -> Spec:
    def create(js: JetStreamContext) -> Any:
        params: dict[str, Any] = {"history": 1, "replicas": settings.replicas, "max_bytes": cap}
        if ttl:
            params["ttl"] = ttl
        if max_value:
            params["max_value_size"] = max_value
        if direct:
            params["direct"] = True
        return js.create_key_value(bucket=name, **params)

    extra: tuple[Setting, ...] = (Setting("max_msg_size", max_value),) if max_value else ()
    if direct:
        extra += (Setting("allow_direct", True),)
    return Spec(
        Kind.KV,
        name,
        (*_common(settings, cap), Setting("max_msgs_per_subject", 1), Setting("max_age", ttl), *extra),
        create,
    )


def _object_store(name: str, settings: LayoutSettings, cap: int) -> Spec:
    def create(js: JetStreamContext) -> Any:
        config = api.ObjectStoreConfig(bucket=name, replicas=settings.replicas, max_bytes=cap)
        return js.create_object_store(name, config=config)

    return Spec(Kind.OBJECT_STORE, name, _common(settings, cap), create)


def desired(settings: LayoutSettings) -> list[Spec]:
    """Every object xdsbus uses, as `settings` shape it."""
    caps = settings.caps
    return [
        _stream(
            EVENTS_STREAM,
            [f"{EVENTS_SUBJECT_PREFIX}.>"],
            settings,
            caps.events,
            Setting("duplicate_window", settings.duplicate_window),
        ),
        _stream(
            LEDGER_STREAM,
            [f"{LEDGER_SUBJECT_PREFIX}.>"],
            settings,
            caps.ledger,
            # Edges and the CLI read records by sequence.
            Setting("allow_direct", True),
        ),
        # max_value_size -1: any body up to the server's max_payload (larger ones go to the object store).
        # Direct gets: an edge reads a version's bodies a thousand per request (ledger/store.py).
        _kv(RESOURCES_BUCKET, settings, caps.resources, max_value=-1, direct=True),
        _object_store(LARGE_RESOURCES_STORE, settings, caps.resources_large),
        _object_store(CHECKPOINTS_STORE, settings, caps.checkpoints),
        _object_store(LEDGER_CHANGES_STORE, settings, caps.ledger_changes),
        _object_store(LEDGER_BASES_STORE, settings, caps.ledger_bases),
        _object_store(EVENT_BODIES_STORE, settings, caps.event_bodies),
        _kv(STATUS_BUCKET, settings, caps.status),
        _kv(LEASES_BUCKET, settings, caps.leases, ttl=settings.lease_ttl),
        _kv(RETENTION_BUCKET, settings, caps.retention),
        _kv(PROXIES_BUCKET, settings, caps.proxies, ttl=settings.proxy_status_ttl),
    ]


def _normal(value: Any) -> Any:
    """Server values in the spec's terms: an absent max_age or max_msg_size is 0 or -1 as configured."""
    if isinstance(value, enum.Enum):
        return value.value
    return value


def _same(field: str, have: Any, want: Any) -> bool:
    have = _normal(have)
    if field == "max_age":
        return float(have or 0.0) == float(want)
    if field == "duplicate_window":
        return abs(float(have or 0.0) - float(want)) < 1e-6
    if field == "max_msg_size":
        return (have if have is not None else -1) == want
    return bool(have == want)


async def _config(js: JetStreamContext, spec: Spec) -> api.StreamConfig | None:
    try:
        return (await js.stream_info(spec.stream)).config
    except NotFoundError:
        return None


def _compare(spec: Spec, config: api.StreamConfig | None) -> list[Difference]:
    if config is None:
        return [Difference(spec)]
    return [
        Difference(spec, s.field, _normal(getattr(config, s.field)), s.want, s.reshapeable)
        for s in spec.settings
        if not _same(s.field, getattr(config, s.field), s.want)
    ]


async def compare(js: JetStreamContext, settings: LayoutSettings) -> list[Difference]:
    """Every difference between the server's objects and the layout, object by object."""
    differences = []
    for spec in desired(settings):
        differences += _compare(spec, await _config(js, spec))
    return differences


async def apply(js: JetStreamContext, settings: LayoutSettings) -> list[Difference]:
    """Create the missing objects and reshape what can be reshaped; returns what cannot be changed in
    place (left as it is: recreating an object would lose its data). Each object is looked at again
    after a transient fault (a leader election, a restarting node), so an object created by an attempt
    whose answer was lost is not created twice."""
    refused: list[Difference] = []
    for spec in desired(settings):
        refused += await retry_transient(
            functools.partial(_apply_one, js, spec),
            what=f"applying the layout to {spec.describe()}",
            within=APPLY_RETRY_WITHIN,
        )
    return refused


async def _apply_one(js: JetStreamContext, spec: Spec) -> list[Difference]:
    config = await _config(js, spec)
    if config is None:
        await spec.create(js)
        config = await _config(js, spec)
        assert config is not None, spec.describe()
    differences = _compare(spec, config)
    reshape = [d for d in differences if d.reshapeable]
    if reshape:
        for d in reshape:
            setattr(config, d.setting, d.want)
        if config.duplicate_window and config.max_age:
            # The server refuses a duplicate window longer than the age limit (the leases TTL).
            config.duplicate_window = min(config.duplicate_window, config.max_age)
        await js.update_stream(config)
    return [d for d in differences if not d.reshapeable]


def render(specs: Sequence[Spec]) -> str:
    """The layout as text, one object a line with its settings."""
    lines = []
    for spec in specs:
        settings = ", ".join(f"{s.field}={s.want!r}" for s in spec.settings)
        lines.append(f"{spec.describe()}: {settings}")
    return "\n".join(lines)
