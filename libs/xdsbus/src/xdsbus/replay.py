"""Replay: the folded state and resources at any event sequence, with the builder's own code.

A scope pinned at that point (docs/rollback.md) has the resources of the version it is pinned to, read
from that version's manifest in the ledger as the builder read them; the result also gives what the fold
would have served unpinned."""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from xdsbus.bus import Bus
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import ResourceKey
from xdsbus.contract.scopes import DEFAULT_SCOPE, GATEWAY_SCOPE_PREFIX
from xdsbus.fold.folding import Rejection
from xdsbus.fold.reading import fold_until
from xdsbus.fold.state import FoldState
from xdsbus.ledger import checkpoints, pins
from xdsbus.secretbox import SecretBox
from xdsbus.translate.resource_table import ResourceTable
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
    # The version the scope is pinned to at `seq` (0: not pinned), and then the digest and size of what
    # the fold made, which the scope would serve unpinned.
    pinned_to: int = 0
    unpinned_digest: str = ""
    unpinned_resources: int = 0
    # The pinned resources (key -> sha256), when pinned.
    pinned: dict[ResourceKey, str] = {}


def scope_table(translator: Translator, scope: str) -> ResourceTable:
    """The resources of `scope` in a translation: the translator's own table, or for a derived scope
    `gateway.<namespace>.<name>` that Gateway's (empty when the Gateway does not exist at that point)."""
    if not scope.startswith(GATEWAY_SCOPE_PREFIX):
        return translator.table
    scopes = translator.gateway_scopes
    scopes.refresh()
    return scopes.table(scope) if scope in scopes.scopes() else ResourceTable()


async def replay_to(
    bus: Bus,
    scope: str,
    seq: int,
    settings: TranslatorSettings,
    secret_box: SecretBox | None = None,
    digest_algorithm: str = digests.CURRENT,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> tuple[ReplayResult, Translator]:
    """Fold the log up to `seq`, starting from the newest checkpoint at or before it, and translate.
    A derived scope (`gateway.<namespace>.<name>`) is replayed from the `default` scope's checkpoints.

    The digest is computed by `digest_algorithm`: to compare with a ledger record, pass the one the
    record names. Reproducing a version that serves TLS needs the key the builder used: without it the
    Secrets are rejected and the digest differs. A pin whose version cannot be read raises
    `pins.PinRejected` (the builder refused it and kept its head, which the fold alone cannot say).
    `on_progress(stage, done, total)` hears how far it got: the events folded ("folding events"), then
    the translation ("translating", a single step)."""
    folded_scope = DEFAULT_SCOPE if scope.startswith(GATEWAY_SCOPE_PREFIX) else scope
    checkpoint = await checkpoints.load_at_or_before(bus, folded_scope, seq)
    state = checkpoint.state if checkpoint else FoldState()
    start = state.seq

    def folding(done: int, total: int) -> None:
        if on_progress is not None:
            on_progress("folding events", done, total)

    folded = await fold_until(bus, state, seq, on_batch=folding)
    if on_progress is not None:
        on_progress("translating", 0, 0)
    translator = Translator(settings, secret_box=secret_box)
    translator.full_build(state)
    algorithm = digests.algorithm_of(digest_algorithm)
    table = scope_table(translator, scope)
    if algorithm == digests.CURRENT:
        digest = table.digest()
    else:
        digest = digests.digest_of(algorithm, ((k.type_url, k.name, r.sha256) for k, r in table.items()))
    result = ReplayResult(
        seq=seq,
        digest=digest,
        digest_algorithm=algorithm,
        resource_count=len(table),
        checkpoint_seq=start,
        events_folded=state.seq - start,
        rejected=folded.rejected,
    )
    # Derived scopes follow the fold: only a scope with a builder of its own can be pinned.
    pin = None if scope.startswith(GATEWAY_SCOPE_PREFIX) else state.pin_of(scope)
    if pin is not None and pin.pinned:
        target = await pins.target(bus, scope, pin.version)
        entries = ((k.type_url, k.name, sha) for k, sha in target.resources.items())
        result = msgspec.structs.replace(
            result,
            digest=digests.digest_of(algorithm, entries),
            resource_count=len(target.resources),
            pinned_to=pin.version,
            unpinned_digest=digest,
            unpinned_resources=len(table),
            pinned=target.resources,
        )
    return result, translator
