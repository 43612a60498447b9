"""Two versions of a scope compared resource by resource, like `xdsbus ledger diff`, with each added,
removed or changed resource rendered as Envoy JSON side by side and aligned line by line.

Bodies are rendered as `xdsbus dump` renders them (`xdsbus.ledger.dump`): private key material redacted,
and a sealed Secret shown as sealed with the id of the key it needs, since the console holds no keyring
(docs/design.md §10)."""

from __future__ import annotations

import difflib
import json

import msgspec

from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.type_urls import TYPE_ORDER
from xdsbus.ledger import reader
from xdsbus.ledger.dump import sealed_json, to_json
from xdsbus.ledger.store import BodyMissing, BodySealed, fetch_stored, open_body, sealed_kid

# Resources whose bodies a diff renders; the rest are listed by name.
MAX_BODIES = 100


class Row(msgspec.Struct, frozen=True, array_like=True):
    """One aligned line pair: `op` is `=` (same), `~` (changed), `-` (left only) or `+` (right only)."""

    op: str
    left: str | None
    right: str | None


class ResourceDiff(msgspec.Struct, frozen=True, kw_only=True):
    """One resource that differs between the two versions."""

    type_url: str
    type: str
    name: str
    change: str  # added | removed | changed
    left_sha256: str = ""
    right_sha256: str = ""
    # The aligned JSON lines; None past MAX_BODIES.
    rows: list[Row] | None = None


class VersionDiff(msgspec.Struct, frozen=True, kw_only=True):
    """Everything that differs from version `a` to version `b` of `scope`."""

    scope: str
    a: int
    b: int
    added: int
    removed: int
    changed: int
    resources: list[ResourceDiff]
    # Resources listed without bodies (past MAX_BODIES).
    without_bodies: int


def short_type(type_url: str) -> str:
    """`type.googleapis.com/envoy.config.cluster.v3.Cluster` -> `Cluster`."""
    return type_url.rsplit(".", 1)[-1]


def _type_rank(type_url: str) -> int:
    return TYPE_ORDER.index(type_url) if type_url in TYPE_ORDER else len(TYPE_ORDER)


async def body_text(bus: Bus, key: ResourceKey, sha256: str) -> str:
    """A resource body as indented Envoy JSON, as `xdsbus dump` writes it."""
    try:
        stored = await fetch_stored(bus, sha256)
    except BodyMissing as exc:
        return json.dumps({"@type": key.type_url, "name": key.name, "missing": str(exc)}, indent=2)
    try:
        body: dict[str, object] = to_json(open_body(stored, sha256, None))
    except BodySealed:
        body = sealed_json(key.type_url, key.name, sealed_kid(stored))
    return json.dumps(body, indent=2, sort_keys=True)


def side_by_side(left: str, right: str) -> list[Row]:
    """Two texts aligned line by line: equal runs side by side, replaced runs paired up, the rest alone."""
    a, b = left.splitlines(), right.splitlines()
    rows: list[Row] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            rows += [Row("=", a[i], b[j]) for i, j in zip(range(i1, i2), range(j1, j2), strict=True)]
            continue
        paired = min(i2 - i1, j2 - j1) if tag == "replace" else 0
        rows += [Row("~", a[i1 + n], b[j1 + n]) for n in range(paired)]
        rows += [Row("-", a[i], None) for i in range(i1 + paired, i2)]
        rows += [Row("+", None, b[j]) for j in range(j1 + paired, j2)]
    return rows


async def diff_versions(bus: Bus, scope: str, a: int, b: int, max_bodies: int = MAX_BODIES) -> VersionDiff:
    """What differs from version `a` to version `b`. Raises `reader.VersionNotFound` (or
    `HistoryPurged`) when either version cannot be read."""
    left = await reader.resource_set(bus, scope, a)
    right = await reader.resource_set(bus, scope, b)
    keys = sorted(
        (left.keys() | right.keys()),
        key=lambda k: (_type_rank(k.type_url), k.type_url, k.name),
    )
    resources: list[ResourceDiff] = []
    counts = {"added": 0, "removed": 0, "changed": 0}
    for key in keys:
        before, after = left.get(key, ""), right.get(key, "")
        if before == after:
            continue
        change = "added" if not before else "removed" if not after else "changed"
        counts[change] += 1
        rows = None
        if len(resources) < max_bodies:
            old = await body_text(bus, key, before) if before else ""
            new = await body_text(bus, key, after) if after else ""
            rows = side_by_side(old, new)
        resources.append(
            ResourceDiff(
                type_url=key.type_url,
                type=short_type(key.type_url),
                name=key.name,
                change=change,
                left_sha256=before,
                right_sha256=after,
                rows=rows,
            )
        )
    return VersionDiff(
        scope=scope,
        a=a,
        b=b,
        resources=resources,
        without_bodies=sum(1 for r in resources if r.rows is None),
        **counts,
    )
