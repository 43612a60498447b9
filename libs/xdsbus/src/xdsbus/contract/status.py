"""Status records in KV `xdsbus_status` and their one key scheme: what the builder decided about each
object (accepted, or rejected and why), and what sources report about themselves (files, registries)."""

from __future__ import annotations

import enum
import re

import msgspec

from xdsbus.contract.pins import PinStatus

_UNSAFE = re.compile(r"[^-/_=.a-zA-Z0-9]")
# '.' separates subject tokens, which must not be empty (a file named `a..yaml`).
_DOTS = re.compile(r"\.{2,}")


def _fold(text: str) -> str:
    return _DOTS.sub(".", _UNSAFE.sub("_", text)).strip(".")


def status_key(kind: str, source: str, key: str) -> str:
    """KV key of an object's status: `<kind>.<source>/<key>` folded to KV's alphabet.

    The kind is a subject token of its own, so that a reader interested in a few kinds filters on the
    server (`status_kind_filter`) instead of receiving every object's status: watch-k8s, writing Gateway
    API statuses back, would otherwise receive the verdict on every Ingress, Service and EndpointSlice."""
    return f"{status_kind_token(kind)}.{_fold(f'{source}/{key}') or '_'}"


def status_kind_token(kind: str) -> str:
    """The first subject token of every status key of `kind`."""
    return _fold(kind).replace(".", "_") or "_"


def status_kind_filter(kind: str) -> str:
    """The KV key filter matching every status of `kind` (and nothing else)."""
    return f"{status_kind_token(kind)}.>"


def is_legacy_status_key(key: str) -> bool:
    """Whether a KV key is of the earlier layout `<kind>/<source>/<key>` (its first token holds a '/'),
    which `status_store.migrate_legacy_keys` moves to `status_key`."""
    return "/" in key.split(".", 1)[0]


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    # Not this gateway's to serve (an Ingress of another class): not an error.
    IGNORED = "ignored"


class Condition(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """A Kubernetes-style status condition (Gateway API objects)."""

    type: str
    status: str
    reason: str
    message: str = ""
    observed_generation: int = 0


class ListenerStatus(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """One Gateway listener: its conditions and how many routes attached to it."""

    name: str
    attached_routes: int = 0
    conditions: list[Condition] = []


class ParentStatus(msgspec.Struct, frozen=True, rename="camel", kw_only=True, omit_defaults=True):
    """A route's verdict for one of its parentRefs."""

    parent_ref: dict[str, str | int]
    controller_name: str
    conditions: list[Condition] = []


class LineError(msgspec.Struct, frozen=True, omit_defaults=True):
    """One reason a file was (partly) rejected, with its line when known (file sources)."""

    reason: str
    line: int | None = None


class WatcherState(msgspec.Struct, frozen=True, omit_defaults=True):
    """A watcher's report on itself (kind `Watcher`, key `state`, xdsbus.watcher_report), rewritten by
    the lease holder every third of its lease TTL while it publishes: who publishes, since when, and how
    fresh its view of the source is. Times are unix seconds on the watcher's host."""

    holder: str
    term: int = 0
    # False in the last report of a watcher that stopped: nobody publishes the source until another
    # replica takes the lease.
    leading: bool = True
    leading_since: float = 0.0
    # The source's last answer (a list, a watch frame, a poll): its lag counts from here.
    last_answer: float = 0.0
    last_resync: float = 0.0
    # Counted since this holder took the lease (its term).
    resyncs: int = 0
    events_published: int = 0
    last_error: str = ""
    last_error_at: float = 0.0
    reported: float = 0.0
    # Seconds between reports: a report older than a few of these is from a watcher that is gone.
    report_every: float = 0.0


class ObjectStatus(msgspec.Struct, frozen=True, omit_defaults=True, gc=False):
    """Published to KV xdsbus_status under the object's key; `warnings` are partial rejections.

    Untracked by the cyclic collector (gc=False): its lists hold strings and frozen structs, never a
    cycle, and the builder keeps one per object (60k at cold_load's size) for the collector to walk.

    Gateway API objects also carry their status as the API defines it: `conditions`, per-listener
    details with `listeners` (Gateways), per-parent details with `parents` (routes) and `addresses`.
    Files carry every error with its line in `errors`. Fields are optional, so every entry ever written
    stays readable."""

    kind: str
    source: str
    key: str
    state: Verdict
    reason: str = ""
    warnings: list[str] = []
    conditions: list[Condition] = []
    listeners: list[ListenerStatus] = []
    parents: list[ParentStatus] = []
    addresses: list[str] = []
    errors: list[LineError] = []
    # A scope's pin (kind `LedgerPin`, docs/rollback.md).
    pin: PinStatus | None = None
    # A watcher's report on itself (kind `Watcher`).
    watcher: WatcherState | None = None
