"""What the translator decided about each object: accepted, or rejected and why."""

from __future__ import annotations

import enum

import msgspec


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


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


class ObjectStatus(msgspec.Struct, frozen=True, omit_defaults=True):
    """Published to KV xdsbus_status under the object's key; `warnings` are partial rejections.

    Gateway API objects also carry their status as the API defines it: `conditions`, per-listener
    details with `listeners` (Gateways), per-parent details with `parents` (routes) and `addresses`."""

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
