"""What the translator decided about each object: accepted, or rejected and why."""

from __future__ import annotations

import enum

import msgspec


class Verdict(enum.StrEnum):
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ObjectStatus(msgspec.Struct, frozen=True, omit_defaults=True):
    """Published to KV xdsbus_status under the object's key; `warnings` are partial rejections."""

    kind: str
    source: str
    key: str
    state: Verdict
    reason: str = ""
    warnings: list[str] = []
