"""What triggered a version: the events of its range (first_seq..last_seq on XDSBUS_EVENTS, docs/design.md
§5), grouped by source, kind and operation, with the first few object keys. Only envelopes are read,
never a body (a Secret's is sealed; the console holds no keyring).

Events below the checkpoint floor are purged from the log (docs/design.md §4): a version whose events
are gone says so instead of naming them."""

from __future__ import annotations

import collections

import msgspec
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import api

from xdsbus.bus import Bus
from xdsbus.events import EVENTS_SUBJECT_PREFIX, MalformedEvent, decode

# Events read per version: enough to say what a resync or a burst was made of.
MAX_EVENTS = 500
# Object keys listed per version.
MAX_KEYS = 20
# Versions whose triggers are kept: their event ranges never change.
CACHE_SIZE = 4096
# Seconds to wait for the next event of a range the stream holds.
_NEXT_TIMEOUT = 2.0


class TriggerGroup(msgspec.Struct, frozen=True):
    """Events of one source, kind and operation in a version's range."""

    source: str
    kind: str
    op: str
    count: int


class Triggers(msgspec.Struct, frozen=True, kw_only=True):
    """The events behind one version."""

    first_seq: int
    last_seq: int
    # How many events were read (at most MAX_EVENTS), and whether some of the range was purged.
    read: int
    purged: bool
    groups: list[TriggerGroup]
    # `Kind key` of the first MAX_KEYS upserts and deletes, in log order.
    keys: list[str]
    # Events the log holds but could not be decoded.
    malformed: int = 0


class TriggerReader:
    """Reads and caches the triggers of event ranges."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self._cache: collections.OrderedDict[tuple[int, int], Triggers] = collections.OrderedDict()

    async def of(self, first_seq: int, last_seq: int) -> Triggers:
        """The triggers of events first_seq..last_seq."""
        key = (first_seq, last_seq)
        found = self._cache.get(key)
        if found is not None:
            self._cache.move_to_end(key)
            return found
        triggers = await self._read(first_seq, last_seq)
        self._cache[key] = triggers
        while len(self._cache) > CACHE_SIZE:
            self._cache.popitem(last=False)
        return triggers

    async def _read(self, first_seq: int, last_seq: int) -> Triggers:
        counts: collections.Counter[tuple[str, str, str]] = collections.Counter()
        keys: list[str] = []
        read = malformed = 0
        expected = first_seq
        purged = False
        if first_seq > 0 and last_seq >= first_seq:
            sub = await self.bus.js.subscribe(
                f"{EVENTS_SUBJECT_PREFIX}.>",
                ordered_consumer=True,
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
                config=api.ConsumerConfig(opt_start_seq=first_seq),
            )
            try:
                while read < MAX_EVENTS:
                    try:
                        msg = await sub.next_msg(timeout=_NEXT_TIMEOUT)
                    except (TimeoutError, NatsTimeoutError):
                        purged = True
                        break
                    seq = msg.metadata.sequence.stream
                    if seq > last_seq:
                        purged = purged or expected <= last_seq
                        break
                    purged = purged or seq != expected
                    expected = seq + 1
                    read += 1
                    try:
                        event = decode(msg.data)
                    except MalformedEvent:
                        malformed += 1
                        continue
                    counts[(event.source, event.kind, event.op.value)] += 1
                    if event.key and len(keys) < MAX_KEYS:
                        keys.append(f"{event.kind} {event.key}")
                    if seq >= last_seq:
                        break
            finally:
                await sub.unsubscribe()
        groups = [TriggerGroup(s, k, o, n) for (s, k, o), n in sorted(counts.items())]
        return Triggers(
            first_seq=first_seq,
            last_seq=last_seq,
            read=read,
            purged=purged,
            groups=groups,
            keys=keys,
            malformed=malformed,
        )
