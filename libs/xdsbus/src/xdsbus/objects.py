"""Reading JetStream Object Store objects without nats-py's flow-controlled ordered consumer, listing a
store with a deadline, and the content-addressed entries of claim-checked event bodies.

nats-py 2.16's `ObjectStore.get` reads the chunks through an ordered push consumer with flow control
and answers the server's flow-control requests from a task that wakes every 250 ms: every ~2 MiB of an
object waits up to a quarter of a second (measured on loopback: 2.6 MB in 270 ms, 20 MB in 3.5 s,
against 15 ms for 1.5 MB). At 20k Ingresses the HTTP RouteConfiguration is 2.6 MB, so each edge paid
that wait on every route change (bench/ingress_20k.py). `read_object` fetches the chunks with an
ephemeral pull consumer instead, a window of chunks per request (bounded, so that the server never
holds more than a few MiB for this client: a slow reader is otherwise cut off as a slow consumer).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets

from nats.js import JetStreamContext, api
from nats.js.errors import BadObjectMetaError, DigestMismatchError, NotFoundError, ObjectNotFoundError
from nats.js.object_store import OBJ_CHUNKS_PRE_TEMPLATE, OBJ_DIGEST_TYPE, OBJ_STREAM_TEMPLATE, ObjectStore

from xdsbus.transient import retry_transient

# Chunks asked for per pull request (nats-py writes 128 KiB chunks: 4 MiB per request).
WINDOW = 32
# Seconds a window may take before the object counts as unreadable (its chunks are gone).
WINDOW_TIMEOUT = 10.0
# Seconds a listing waits for each entry (or the end marker) before it counts as a transient fault.
LIST_ENTRY_TIMEOUT = 5.0
# Seconds a read is retried through transient faults: a Raft election and a little more. A caller that
# still fails retries at its own pace (the edge keeps serving the previous version meanwhile).
READ_RETRY_WITHIN = 15.0


async def read_object(js: JetStreamContext, store: ObjectStore, name: str) -> bytes:
    """The content of object `name` of `store`, verified against its digest; read again through
    transient NATS faults for up to READ_RETRY_WITHIN seconds (a leader change, a restart).

    Raises ObjectNotFoundError when the object does not exist (or was deleted) or its chunks are gone,
    DigestMismatchError when what was read does not match its metadata."""
    return await retry_transient(
        lambda: _read_object_once(js, store, name),
        what=f"reading object {name}",
        within=READ_RETRY_WITHIN,
    )


async def _read_object_once(js: JetStreamContext, store: ObjectStore, name: str) -> bytes:
    info = await store.get_info(name)
    if not info.nuid:
        raise BadObjectMetaError
    if info.is_link():
        return (await store.get(name)).data or b""
    if not info.size:
        return b""
    chunks = info.chunks or 0
    stream = OBJ_STREAM_TEMPLATE.format(bucket=info.bucket)
    # Named here, so that it can be deleted below by name.
    consumer = f"read-{secrets.token_hex(8)}"
    await js.add_consumer(
        stream,
        config=api.ConsumerConfig(
            name=consumer,
            filter_subject=OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=info.bucket, obj=info.nuid),
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.NONE,
            mem_storage=True,
            num_replicas=1,
            # Removed below; this only covers a reader that died mid-read.
            inactive_threshold=60.0,
        ),
    )
    sub = await js.pull_subscribe_bind(consumer, stream=stream)
    data = bytearray()
    try:
        received = 0
        while received < chunks:
            try:
                msgs = await sub.fetch(min(WINDOW, chunks - received), timeout=WINDOW_TIMEOUT)
            except TimeoutError:  # nats.errors.TimeoutError too
                raise ObjectNotFoundError(
                    description=f"object {name!r}: {received} of {chunks} chunks readable"
                ) from None
            for msg in msgs:
                data += msg.data
            received += len(msgs)
    finally:
        with contextlib.suppress(Exception):
            await sub.unsubscribe()
        with contextlib.suppress(Exception):
            await js.delete_consumer(stream, consumer)
    digest = (info.digest or "").removeprefix(OBJ_DIGEST_TYPE).removeprefix(OBJ_DIGEST_TYPE.upper())
    if len(data) != info.size or hashlib.sha256(data).digest() != base64.urlsafe_b64decode(digest):
        raise DigestMismatchError
    return bytes(data)


async def list_objects(store: ObjectStore, *, what: str) -> list[api.ObjectInfo]:
    """Every object of `store` that is not deleted (none: an empty list), listed again through transient
    NATS faults for up to READ_RETRY_WITHIN seconds; `what` names the store in the retry warnings.

    nats-py's `ObjectStore.list` waits without a deadline for its watcher's end marker: during a stream
    leader election on a cluster it was seen waiting for minutes, and a builder that had lost its lease
    waited with it (docs/operating-on-a-cluster.md). Here each entry is awaited at most
    LIST_ENTRY_TIMEOUT, and the watcher is stopped whatever happens."""
    return await retry_transient(lambda: _list_once(store), what=f"listing {what}", within=READ_RETRY_WITHIN)


async def _list_once(store: ObjectStore) -> list[api.ObjectInfo]:
    watcher = await store.watch(ignore_deletes=True)
    try:
        infos: list[api.ObjectInfo] = []
        while True:
            info = await watcher.updates(timeout=LIST_ENTRY_TIMEOUT)
            # None marks the end of what the store held when the watch began.
            if info is None:
                return infos
            infos.append(info)
    finally:
        with contextlib.suppress(Exception):
            await watcher.stop()


async def store_claimed(store: ObjectStore, data: bytes) -> str:
    """Store `data` under its sha256 (hex), which is returned; an entry already there is kept as it is
    (same name, same content), so republishing a large body costs no second upload."""
    name = hashlib.sha256(data).hexdigest()
    try:
        info = await store.get_info(name)
        if info.size == len(data):
            return name
    except NotFoundError:  # ObjectNotFoundError too
        pass
    await store.put(name, data)
    return name


async def read_claimed(js: JetStreamContext, store: ObjectStore, sha256: str) -> bytes:
    """The content stored under `sha256`, verified to hash to its name.

    Raises ObjectNotFoundError when it is gone, DigestMismatchError when it does not match."""
    data = await read_object(js, store, sha256)
    if hashlib.sha256(data).hexdigest() != sha256:
        raise DigestMismatchError
    return data
