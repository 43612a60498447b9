"""Publishing ledger versions, fenced so that two builders can never both publish.

Every record carries Nats-Expected-Last-Subject-Sequence: the stream sequence of the last record this
publisher saw on its subject. A new leader's first record is a term record (docs/design.md §5), so from
then on a former leader's expected sequence is stale and JetStream refuses whatever it publishes.

A publish that meets a transient fault (a timeout, no responders, a leader change: `xdsbus.transient`)
is sent again, the same bytes under the same Nats-Msg-Id: when the first attempt was stored and only
its acknowledgement lost, JetStream's duplicate window answers the retry with a duplicate
acknowledgement, which counts as success once the record at its sequence is this one. A refusal of the
expected sequence is never retried: it means another builder wrote the subject."""

from __future__ import annotations

import asyncio
import logging
import time

from nats.js.errors import APIError

from xdsbus.backoff import Backoff
from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import Changes, Resource
from xdsbus.ledger.records import INLINE_CHANGES_LIMIT, changes_message, changes_object_name
from xdsbus.ledger.store import reseal_bodies, store_bodies
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.secretbox import SecretBox
from xdsbus.transient import RETRY_CAP, describe, is_transient, retry_transient

log = logging.getLogger(__name__)

# JetStream's "wrong last sequence" errors: someone else published on the subject since we looked.
_WRONG_LAST_SEQUENCE = (10071, 10164)

# How long one record is retried through transient faults before the builder steps down (and stands
# by for the lease again): longer than a Raft election and a restart, well inside the duplicate window.
PUBLISH_RETRY_WITHIN = 60.0


class LostLedger(RuntimeError):
    """Another builder published to this scope's ledger: this one must stop publishing."""


class LedgerPublisher:
    """Appends versions to one scope's ledger subject, expecting to be its only writer. With a keyring,
    Secret bodies are stored sealed (docs/design.md §5, §10)."""

    def __init__(
        self, bus: Bus, scope: str, translator_version: str, secret_box: SecretBox | None = None
    ) -> None:
        self.bus = bus
        self.secret_box = secret_box
        self.scope = scope
        self.subject = ledger_subject(scope)
        self.translator_version = translator_version
        self.last_stream_seq = 0
        self.head_version = 0

    def adopt_head(self, stream_seq: int, version: int) -> None:
        """Continue after the given ledger head: `stream_seq` is the sequence of the newest record on the
        subject (a version or a term record), `version` the newest version."""
        self.last_stream_seq = stream_seq
        self.head_version = version

    async def publish_term(self, term: int, holder: str) -> ledger_pb2.Version:
        """Append a term record after the adopted head: the fence that shuts out every former leader.
        Raises `LostLedger` when anything was published since the head was read."""
        record = ledger_pb2.Version(
            scope=self.scope,
            term=ledger_pb2.Term(
                term=term,
                holder=holder,
                after_stream_seq=self.last_stream_seq,
                head_version=self.head_version,
                time_unix_nano=time.time_ns(),
            ),
        )
        await self._append(record, f"{self.scope}:term:{term}")
        return record

    async def publish(
        self,
        *,
        version: int,
        first_seq: int,
        changes: Changes,
        digest: str,
        resource_count: int,
        digest_algorithm: str = digests.CURRENT,
        pin: ledger_pb2.Pin | None = None,
    ) -> ledger_pb2.Version:
        """Store the changed bodies, then append the version record (bodies first: a reader that sees
        the record can always fetch what it names). `digest` was computed by `digest_algorithm`
        (`ResourceTable.digest` uses the current one). `pin` marks a version an operator's pin or
        release made (docs/rollback.md)."""
        await retry_transient(
            lambda: store_bodies(self.bus, changes.changed, self.secret_box),
            what=f"ledger {self.subject}: storing bodies",
            within=PUBLISH_RETRY_WITHIN,
        )
        record = ledger_pb2.Version(
            version=version,
            parent=self.head_version,
            first_seq=first_seq,
            last_seq=version,
            time_unix_nano=time.time_ns(),
            translator_version=self.translator_version,
            digest=digest,
            digest_algorithm=digest_algorithm,
            scope=self.scope,
            resource_count=resource_count,
            changed_count=len(changes.changed),
            removed_count=len(changes.removed),
        )
        if pin is not None:
            record.pin.CopyFrom(pin)
        change_list = changes_message(changes)
        if change_list.ByteSize() > INLINE_CHANGES_LIMIT:
            name = changes_object_name(self.scope, version)
            data = change_list.SerializeToString()
            await retry_transient(
                lambda: self.bus.ledger_changes.put(name, data),
                what=f"ledger {self.subject}: storing changes {name}",
                within=PUBLISH_RETRY_WITHIN,
            )
            record.changes_object = name
        else:
            record.changes.CopyFrom(change_list)
        await self._append(record, f"{self.scope}:{version}")
        self.head_version = version
        return record

    async def reseal(self, secrets: list[Resource]) -> int:
        """Seal again with the newest key the Secret bodies (of the current resource set) still stored
        plain or under another key: a leader does it once a term, so a rotation or an upgrade from plain
        bodies leaves no body behind the keyring. Digests do not change; returns how many."""
        if self.secret_box is None or not secrets:
            return 0
        count = await reseal_bodies(self.bus, secrets, self.secret_box)
        if count:
            log.info("scope %s: sealed %d Secret bodies with key %s", self.scope, count, self.secret_box.kid)
        return count

    async def _append(self, record: ledger_pb2.Version, msg_id: str) -> None:
        """Publish one record, fenced on the last subject sequence this publisher saw, retrying through
        transient faults (see the module)."""
        payload = record.SerializeToString()
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(self.last_stream_seq),
            "Nats-Msg-Id": msg_id,
        }
        backoff = Backoff(base=0.1, cap=RETRY_CAP)
        deadline = time.monotonic() + PUBLISH_RETRY_WITHIN
        retried = False
        while True:
            try:
                ack = await self.bus.js.publish(self.subject, payload, stream=LEDGER_STREAM, headers=headers)
                break
            except APIError as exc:
                if exc.err_code in _WRONG_LAST_SEQUENCE:
                    # JetStream checks the fence before the duplicate window: a retry of a record that
                    # an earlier attempt stored is refused like a stranger's, told apart by its bytes.
                    stored = await self._stored_last(payload) if retried else None
                    if stored is None:
                        raise LostLedger(f"ledger {self.subject} was written by another builder") from exc
                    log.info(
                        "ledger %s: %s was stored by an earlier attempt (sequence %d)",
                        self.subject,
                        msg_id,
                        stored,
                    )
                    self.last_stream_seq = stored
                    return
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                error: Exception = exc
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    raise
                error = exc
            retried = True
            delay = backoff.next_delay()
            log.warning(
                "ledger %s: publishing %s: %s; retrying in %.1fs",
                self.subject,
                msg_id,
                describe(error),
                delay,
            )
            await asyncio.sleep(delay)
        if ack.duplicate and not (retried and await self._stored_as(ack.seq, payload)):
            raise LostLedger(f"record {msg_id} was already published")
        if ack.duplicate:
            log.info(
                "ledger %s: %s was stored by an earlier attempt (sequence %d)", self.subject, msg_id, ack.seq
            )
        self.last_stream_seq = ack.seq

    async def _stored_as(self, seq: int, payload: bytes) -> bool:
        """Whether the ledger holds exactly `payload` on this subject at `seq` (an earlier attempt of
        this very publish, not another builder's record of the same id)."""
        if seq <= self.last_stream_seq:
            return False
        stored = await retry_transient(
            lambda: self.bus.js.get_msg(LEDGER_STREAM, seq), what=f"ledger {self.subject}: reading {seq}"
        )
        return stored.subject == self.subject and stored.data == payload

    async def _stored_last(self, payload: bytes) -> int | None:
        """The sequence of the subject's newest record when it is exactly `payload` stored after the
        fence (an earlier attempt of this publish), else None."""
        stored = await retry_transient(
            lambda: self.bus.js.get_last_msg(LEDGER_STREAM, self.subject),
            what=f"ledger {self.subject}: reading the head",
        )
        if stored.seq is None or stored.seq <= self.last_stream_seq or stored.data != payload:
            return None
        return stored.seq
