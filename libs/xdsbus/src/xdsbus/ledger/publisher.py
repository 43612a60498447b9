"""Publishing ledger versions, fenced so that two builders can never both publish.

Every record carries Nats-Expected-Last-Subject-Sequence: the stream sequence of the last record this
publisher saw on its subject. A new leader's first record is a term record (docs/design.md §5), so from
then on a former leader's expected sequence is stale and JetStream refuses whatever it publishes."""

from __future__ import annotations

import logging
import time

from nats.js.errors import APIError

from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import Changes, Resource
from xdsbus.ledger.records import INLINE_CHANGES_LIMIT, changes_message, changes_object_name
from xdsbus.ledger.store import reseal_bodies, store_bodies
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.secretbox import SecretBox

log = logging.getLogger(__name__)

# JetStream's "wrong last sequence" errors: someone else published on the subject since we looked.
_WRONG_LAST_SEQUENCE = (10071, 10164)


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
    ) -> ledger_pb2.Version:
        """Store the changed bodies, then append the version record (bodies first: a reader that sees
        the record can always fetch what it names). `digest` was computed by `digest_algorithm`
        (`ResourceTable.digest` uses the current one)."""
        await store_bodies(self.bus, changes.changed, self.secret_box)
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
        change_list = changes_message(changes)
        if change_list.ByteSize() > INLINE_CHANGES_LIMIT:
            name = changes_object_name(self.scope, version)
            await self.bus.ledger_changes.put(name, change_list.SerializeToString())
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
        """Publish one record, fenced on the last subject sequence this publisher saw."""
        headers = {
            "Nats-Expected-Last-Subject-Sequence": str(self.last_stream_seq),
            "Nats-Msg-Id": msg_id,
        }
        try:
            ack = await self.bus.js.publish(
                self.subject, record.SerializeToString(), stream=LEDGER_STREAM, headers=headers
            )
        except APIError as exc:
            if exc.err_code in _WRONG_LAST_SEQUENCE:
                raise LostLedger(f"ledger {self.subject} was written by another builder") from exc
            raise
        if ack.duplicate:
            raise LostLedger(f"record {msg_id} was already published")
        self.last_stream_seq = ack.seq
