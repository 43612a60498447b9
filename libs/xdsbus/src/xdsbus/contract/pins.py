"""Rollback as an event (docs/design.md §5, docs/rollback.md): the `LedgerPin` events operators publish,
and the pin of a scope as the fold holds it.

`xdsbus rollback V` publishes an upsert of kind `LedgerPin`, source `operator/cli` (the console's is
`operator/console`), key = the scope, body `PinRequest`; `xdsbus unpin` publishes a delete of the same
key, its body naming who released it. Whichever operator tool sent it, the newest LedgerPin event of a
scope decides: the fold keeps one `Pin` per scope under the source `OPERATOR` (fold/state.py)."""

from __future__ import annotations

import msgspec

LEDGER_PIN_KIND = "LedgerPin"
# The source type of operator events: `operator/cli`, `operator/console`. It publishes LedgerPin only.
OPERATOR_SOURCE_TYPE = "operator"
# Where the fold keeps every scope's pin, whichever operator tool sent it.
OPERATOR = "operator"
# Builder status entries (KV xdsbus_status) about a scope's pin: kind, key = the scope.
PIN_STATUS_KIND = "LedgerPin"


class PinRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """The body of a LedgerPin event: pin to `version` (an upsert), or release (a delete, version 0)."""

    version: int = 0
    # Who asked: the operator's name (`--operator`, XDSBUS_OPERATOR, the login name; the console's
    # token names one). Informational: shown by `xdsbus status`, the console and the ledger record.
    by: str = ""
    reason: str = ""


class Pin(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A scope's pin as folded: the version whose resources the scope serves, who set it, from which
    operator source, and the event sequence of the LedgerPin event (the pinned version's number when it
    changes anything). `version` 0 is a release kept for the record: the scope is not pinned."""

    version: int
    by: str = ""
    via: str = ""
    seq: int = 0
    reason: str = ""

    @property
    def pinned(self) -> bool:
        """Whether the scope is pinned (not released)."""
        return self.version > 0


def is_operator_source(source: str) -> bool:
    """Whether an event's source is an operator tool's (`operator/<tool>`)."""
    return source.partition("/")[0] == OPERATOR_SOURCE_TYPE


class PinStatus(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A scope's pin as its builder reports it (the `pin` of its `LedgerPin` status entry): the pin, what
    the scope serves, and what it would serve unpinned, as of the last event folded."""

    # The pin (target 0: released, the scope follows the fold).
    target: int = 0
    by: str = ""
    via: str = ""
    event_seq: int = 0
    reason: str = ""
    # The ledger head: the version the scope's Envoys are given, and its digest.
    serving_version: int = 0
    serving_digest: str = ""
    # What the fold has come to: the last event folded, and the digest and size of the resources the
    # scope would serve unpinned (the version `xdsbus unpin` would publish, when they differ).
    folded_seq: int = 0
    unpinned_digest: str = ""
    unpinned_resources: int = 0
