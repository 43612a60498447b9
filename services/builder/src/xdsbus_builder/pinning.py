"""A scope's pin, as its leader serves it (docs/design.md §5, docs/rollback.md).

The fold keeps the newest LedgerPin of each scope (`FoldState.pin_of`). While the scope is pinned the
leader goes on folding and translating (statuses keep moving, and the translator's table is what the
scope would serve unpinned), but the ledger gets only the pinned version: the one that brings it to the
resources of the pinned version V, read from V's manifest in the ledger, with V's digest. On release
the next commit is the difference from those resources to the translator's, like any version.

The table's committed set is what the ledger holds (restore sets it from the ledger head): while
pinned it is V's resources, so a checkpoint records them and a restore continues from them, and the
release's commit is computed against them."""

from __future__ import annotations

import enum
import logging

import msgspec

from xdsbus.bus import Bus
from xdsbus.contract.pins import PIN_STATUS_KIND, Pin, PinStatus
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.ledger import pins
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.secretbox import SecretBox
from xdsbus.translate.resource_table import ResourceTable

log = logging.getLogger(__name__)


class Step(enum.Enum):
    """What a flush does with the scope's ledger."""

    # Not pinned: publish what the fold made.
    FOLLOW = "follow"
    # A pin this term has not served yet: bring the ledger to its target's resources.
    SERVE = "serve"
    # Pinned and served (or refused): publish nothing for the scope, go on folding.
    HOLD = "hold"


def step(pin: Pin | None, served: Pin | None, refused: Pin | None) -> Step:
    """The flush's step for the scope's pin `pin`, given the pin this term served and the one it refused."""
    if pin is None or not pin.pinned:
        return Step.FOLLOW
    if pin in (served, refused):
        return Step.HOLD
    return Step.SERVE


def release_mark(pin: Pin | None, first_seq: int, version: int) -> ledger_pb2.Pin | None:
    """The `pin` field of a version made while following the fold: the release's when its event is
    folded into this version (`first_seq`..`version`), so the timeline can mark the unpin."""
    if pin is None or pin.pinned or not first_seq <= pin.seq <= version:
        return None
    return pins.record_pin(pin)


class PinnedScope:
    """The pin of one scope during one term of leadership."""

    def __init__(self, bus: Bus, scope: str, secret_box: SecretBox | None) -> None:
        self.bus = bus
        self.scope = scope
        self.secret_box = secret_box
        self.source = f"builder/{scope}"
        # The pin whose target the table's committed set (the ledger head) holds, this term.
        self.served: Pin | None = None
        # A pin whose target cannot be served, and why: the scope keeps its head meanwhile.
        self.refused: Pin | None = None
        self.refusal = ""
        # The digest of the ledger head, which the status names (set at restore and at each publish).
        self.head_digest = ""
        self._reported: ObjectStatus | None = None

    async def serve(
        self, pin: Pin, table: ResourceTable, publisher: LedgerPublisher, version: int
    ) -> ledger_pb2.Version | None:
        """Bring the ledger to the resources of `pin`'s target: publish them as `version` (the last
        folded sequence) with the target's digest, unless the head holds them already; the table's
        committed set becomes them. Returns the record published, if any. A pin that cannot be served is
        refused (kept with its reason for the status): the ledger stays as it is."""
        try:
            target = await pins.target(self.bus, self.scope, pin.version)
            changes = await pins.changes_to(self.bus, table.committed(), target.resources, self.secret_box)
        except pins.PinRejected as exc:
            log.error("scope %s: pin to version %d refused: %s", self.scope, pin.version, exc)
            self.refused, self.refusal = pin, str(exc)
            return None
        record = None
        if changes:
            record = await publisher.publish(
                version=version,
                first_seq=publisher.head_version + 1,
                changes=changes,
                digest=target.digest,
                digest_algorithm=target.digest_algorithm,
                resource_count=len(target.resources),
                pin=pins.record_pin(pin),
            )
            self.head_digest = record.digest
            log.info(
                "version %d: pinned to version %d by %s (%s, event %d): %d changed, %d removed, digest %s",
                record.version,
                pin.version,
                pin.by or "?",
                pin.via,
                pin.seq,
                record.changed_count,
                record.removed_count,
                record.digest[:12],
            )
            table.set_committed(target.resources)
        self.served, self.refused, self.refusal = pin, None, ""
        return record

    def follow(self) -> None:
        """The scope is not pinned (any more): forget what this term served."""
        self.served, self.refused, self.refusal = None, None, ""

    def status(
        self, pin: Pin | None, table: ResourceTable, head: int, folded_seq: int
    ) -> ObjectStatus | None:
        """The scope's `LedgerPin` status entry, `head` being the ledger head version (None: never
        pinned). A released pin's entry names no figures of the fold, so it is written once."""
        if pin is None:
            return None
        who = f"by {pin.by or 'an unnamed operator'} ({pin.via}, event {pin.seq})"
        detail = PinStatus(
            target=pin.version,
            by=pin.by,
            via=pin.via,
            event_seq=pin.seq,
            reason=pin.reason,
            serving_version=head,
            serving_digest=self.head_digest,
        )
        if not pin.pinned:
            state, reason = Verdict.ACCEPTED, f"not pinned: released {who}; the scope follows the fold"
        elif pin == self.refused:
            state = Verdict.REJECTED
            reason = (
                f"pin to version {pin.version} {who} refused: {self.refusal}; the scope keeps version {head} "
                "and publishes nothing until the next rollback or unpin"
            )
        else:
            detail = msgspec.structs.replace(
                detail, folded_seq=folded_seq, unpinned_digest=table.digest(), unpinned_resources=len(table)
            )
            state = Verdict.ACCEPTED
            reason = (
                f"pinned to version {pin.version} {who}: serving version {head} (digest "
                f"{self.head_digest[:12]}); unpinned it would serve {len(table)} resources, digest "
                f"{detail.unpinned_digest[:12]}, as of event {folded_seq}"
            )
        return ObjectStatus(
            kind=PIN_STATUS_KIND, source=self.source, key=self.scope, state=state, reason=reason, pin=detail
        )

    def changed_status(
        self, pin: Pin | None, table: ResourceTable, head: int, folded_seq: int
    ) -> ObjectStatus | None:
        """The scope's status entry when it changed since the last one taken (None: unchanged)."""
        entry = self.status(pin, table, head, folded_seq)
        if entry is None or entry == self._reported:
            return None
        self._reported = entry
        return entry
