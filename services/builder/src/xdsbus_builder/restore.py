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
    # What the ledger holds at its head, so the first new version is the difference to it.
    committed: dict[ResourceKey, str]


async def restore(bus: Bus, scope: str) -> Restored:
    """Load the newest checkpoint and fold forward to the ledger head."""
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
        committed = await reader.resource_set(
            bus, scope, head.record.version, base=committed, after=after_version
        )
        await fold_until(bus, state, head.record.version)
    if head is not None and head.record.digest and not reader.digest_matches(head.record, committed):
        # The checkpoint's resource list does not add up to the head (by the head's own digest
        # algorithm): take the set from the ledger alone, or the next version's changes would be wrong.
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
        last_stream_seq=tip.last_stream_seq,
        committed=committed,
    )
