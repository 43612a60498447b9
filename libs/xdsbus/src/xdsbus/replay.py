"""Replay: the folded state and resources at any event sequence, with the builder's own code."""

from __future__ import annotations

import msgspec

from xdsbus.bus import Bus
from xdsbus.contract import digest as digests
from xdsbus.fold.folding import Rejection
from xdsbus.fold.reading import fold_until
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints
from xdsbus.secretbox import SecretBox
from xdsbus.translate.settings import TranslatorSettings
from xdsbus.translate.translator import Translator


class ReplayResult(msgspec.Struct):
    seq: int
    digest: str
    digest_algorithm: str
    resource_count: int
    checkpoint_seq: int
    events_folded: int
    rejected: list[Rejection]


async def replay_to(
    bus: Bus,
    scope: str,
    seq: int,
    settings: TranslatorSettings,
    secret_box: SecretBox | None = None,
    digest_algorithm: str = digests.CURRENT,
) -> tuple[ReplayResult, Translator]:
    """Fold the log up to `seq`, starting from the newest checkpoint at or before it, and translate.

    The digest is computed by `digest_algorithm`: to compare with a ledger record, pass the one the
    record names. Reproducing a version that serves TLS needs the key the builder used: without it the
    Secrets are rejected and the digest differs."""
    checkpoint = await checkpoints.load_at_or_before(bus, scope, seq)
    state = checkpoint.state if checkpoint else FoldState()
    start = state.seq
    folded = await fold_until(bus, state, seq)
    translator = Translator(settings, secret_box=secret_box)
    translator.full_build(state)
    algorithm = digests.algorithm_of(digest_algorithm)
    table = translator.table
    if algorithm == digests.CURRENT:
        digest = table.digest()
    else:
        digest = digests.digest_of(algorithm, ((k.type_url, k.name, r.sha256) for k, r in table.items()))
    result = ReplayResult(
        seq=seq,
        digest=digest,
        digest_algorithm=algorithm,
        resource_count=len(translator.table),
        checkpoint_seq=start,
        events_folded=state.seq - start,
        rejected=folded.rejected,
    )
    return result, translator
