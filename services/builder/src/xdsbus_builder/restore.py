"""Where a new leader starts: the newest checkpoint, the ledger head, and the resources it holds."""

from __future__ import annotations

import logging

import msgspec

from xdsbus.bus import Bus
from xdsbus.contract.resources import ResourceKey
from xdsbus.fold.reading import fold_until
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints, reader

log = logging.getLogger(__name__)


class Restored(msgspec.Struct):
    state: FoldState
    # The ledger head version (0 for none), and the stream sequence of the newest record on the ledger
    # subject, version or term record (0 for an empty subject): the new leader's term record expects it.
    head_version: int
    last_stream_seq: int
    # The head version's digest ("" for none).
    head_digest: str
    # What the ledger holds at its head, so the first new version is the difference to it.
    committed: dict[ResourceKey, str]


async def restore(bus: Bus, scope: str) -> Restored:
    """Load the newest checkpoint and fold forward to the ledger head. What the ledger holds at the head
    comes from the checkpoint's resource list plus the records after it, or, when those records are
    older than the history window (purged), from the newest ledger base plus the records after it
    (docs/design.md §5): never from the whole history."""
    checkpoint = await checkpoints.load_at_or_before(bus, scope)
    state = checkpoint.state if checkpoint else FoldState()
    committed: dict[ResourceKey, str] = {}
    after_version = 0
    if checkpoint is not None:
        committed = {ResourceKey(t, n): sha for t, n, sha in checkpoint.published}
        after_version = checkpoint.ledger_version
    tip = await reader.tip(bus, scope)
    head = tip.head
    if head is not None and head.record.version > after_version:
        # Versions published after the checkpoint: apply their changes to what the ledger holds, and
        # fold the events they cover so the state matches the head.
        committed = await _committed_at(bus, scope, head.record.version, checkpoint, committed)
        await fold_until(bus, state, head.record.version)
    if head is not None and head.record.digest and not reader.digest_matches(head.record, committed):
        # The checkpoint's resource list does not add up to the head (by the head's own digest
        # algorithm): take the set from the ledger alone (its newest base and the records after it), or
        # the next version's changes would be wrong.
        log.warning(
            "scope %s: checkpoint disagrees with ledger head %d; reading the ledger",
            scope,
            head.record.version,
        )
        committed = await reader.resource_set(bus, scope, head.record.version)
    log.info(
        "restored scope %s: checkpoint at %s, ledger head %s, state at %s (%d objects)",
        scope,
        checkpoint.state.seq if checkpoint else 0,
        head.record.version if head else 0,
        state.seq,
        state.count(),
    )
    return Restored(
        state=state,
        head_version=head.record.version if head else 0,
        head_digest=head.record.digest if head else "",
        last_stream_seq=tip.last_stream_seq,
        committed=committed,
    )


async def _committed_at(
    bus: Bus,
    scope: str,
    version: int,
    checkpoint: checkpoints.Checkpoint | None,
    published: dict[ResourceKey, str],
) -> dict[ResourceKey, str]:
    """The ledger's resource set at `version`: the checkpoint's list plus the records after it, read
    from the checkpoint's own record on; the newest ledger base when there is no checkpoint or its
    records were purged."""
    if checkpoint is not None and checkpoint.ledger_version > 0:
        try:
            return await reader.resource_set(
                bus,
                scope,
                version,
                base=published,
                after=checkpoint.ledger_version,
                after_stream_seq=checkpoint.ledger_stream_seq,
            )
        except reader.HistoryPurged as exc:
            log.info("%s; starting from the newest ledger base", exc)
    return await reader.resource_set(bus, scope, version)
