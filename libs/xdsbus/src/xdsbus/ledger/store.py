"""Content-addressed resource bodies: KV xdsbus_resources, Object Store for bodies over 512 KiB."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable

from nats.js.errors import KeyNotFoundError, NotFoundError, ObjectNotFoundError

from xdsbus.bus import RESOURCES_BUCKET, Bus
from xdsbus.contract.resources import Resource
from xdsbus.objects import read_object

LARGE_BODY = 512 * 1024
# Publishes in flight at once when storing a version's bodies.
_WINDOW = 512


class BodyMissing(LookupError):
    """A body the ledger names is not in the store."""


class BodyCorrupt(ValueError):
    """A stored body whose sha256 does not match its name."""


async def store_bodies(bus: Bus, resources: Iterable[Resource]) -> None:
    """Store bodies under their sha256, pipelined; storing a body twice is harmless."""
    pending: list[asyncio.Future[object]] = []
    seen: set[str] = set()
    for resource in resources:
        if resource.sha256 in seen:
            continue
        seen.add(resource.sha256)
        if len(resource.body) > LARGE_BODY:
            await bus.large_resources.put(resource.sha256, resource.body)
            continue
        subject = f"$KV.{RESOURCES_BUCKET}.{resource.sha256}"
        pending.append(await bus.js.publish_async(subject, resource.body))
        if len(pending) >= _WINDOW:
            await asyncio.gather(*pending)
            pending.clear()
    if pending:
        await asyncio.gather(*pending)


async def fetch_body(bus: Bus, sha256: str) -> bytes:
    """A body by its sha256, verified."""
    try:
        body = (await bus.resources.get(sha256)).value or b""
    except KeyNotFoundError:
        try:
            body = await read_object(bus.js, bus.large_resources, sha256)
        except (ObjectNotFoundError, NotFoundError) as exc:
            raise BodyMissing(f"resource body {sha256} is not stored") from exc
    if hashlib.sha256(body).hexdigest() != sha256:
        raise BodyCorrupt(f"resource body {sha256} does not match its digest")
    return body
