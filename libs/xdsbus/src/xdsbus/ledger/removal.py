"""Removing stored objects and KV entries for good, and only the revision that was looked at.

`ObjectStore.delete` and `KeyValue.delete` leave a marker message per name: a sweep of a new body per
endpoint change would grow the store by one marker per change forever. These purge the subjects
instead (JetStream purge by subject), bounded by stream sequence: a purge with `seq` removes only the
messages before it, so an entry written again after it was looked at (a concurrent publish of the same
content-addressed body) survives.
"""

from __future__ import annotations

import base64

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_META_PRE_TEMPLATE, OBJ_STREAM_TEMPLATE


def meta_subject(bucket: str, name: str) -> str:
    """The subject holding an object's metadata in Object Store `bucket`."""
    return OBJ_META_PRE_TEMPLATE.format(bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode())


async def object_meta_seq(js: JetStreamContext, bucket: str, name: str) -> int | None:
    """The stream sequence of an object's current metadata (its last write), or None when absent."""
    try:
        msg = await js.get_last_msg(OBJ_STREAM_TEMPLATE.format(bucket=bucket), meta_subject(bucket, name))
    except NotFoundError:
        return None
    return msg.seq


async def drop_object(js: JetStreamContext, bucket: str, name: str, nuid: str, meta_seq: int) -> None:
    """Remove object `name` of Object Store `bucket` as it was when its metadata sat at `meta_seq`
    (chunks under `nuid`), leaving no marker. A newer write of the same name (new metadata, new nuid)
    is left alone."""
    stream = OBJ_STREAM_TEMPLATE.format(bucket=bucket)
    await js.purge_stream(stream, subject=meta_subject(bucket, name), seq=meta_seq + 1)
    if nuid:
        await js.purge_stream(stream, subject=OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid))


async def drop_kv_entry(js: JetStreamContext, bucket: str, key: str, revision: int) -> None:
    """Remove KV entry `key` of `bucket` at `revision` (and older), leaving no marker; a revision
    written after it stays."""
    await js.purge_stream(f"KV_{bucket}", subject=f"$KV.{bucket}.{key}", seq=revision + 1)
