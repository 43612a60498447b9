"""The builder's figures for /metrics and what blocks its /ready (xdsbus.health, docs/design.md §9): the
lease, the fold backlog, the last version and checkpoint, a gap in the event log or a full log."""

from __future__ import annotations

import dataclasses
import time

from xdsbus.health import Registry, Series

# Seconds between reads of the consumer's pending count while leading.
BACKLOG_EVERY = 5.0


@dataclasses.dataclass
class BuilderFigures:
    """One builder's state as operators see it; the builder sets the fields, the scrape reads them.
    Times are monotonic seconds."""

    scope: str
    leading: bool = False
    term: int = 0
    # Events in the log the leader has not folded yet (its consumer's num_pending); None while standing by.
    backlog: int | None = None
    version: int = 0
    published_at: float | None = None
    checkpoint_at: float | None = None
    # Why publishing is blocked: a gap in the event log, an event log at its cap (docs/design.md §4).
    gap: str | None = None
    log_full: str | None = None

    def register(self, registry: Registry) -> None:
        """Export these figures to `registry`."""

        def one(value: float | None) -> Series:
            return {} if value is None else {(self.scope,): float(value)}

        def age(at: float | None) -> Series:
            return one(None if at is None else time.monotonic() - at)

        labels = ["scope"]
        registry.gauge(
            "xdsbus_builder_lease_holder",
            "1 while this builder holds the scope's lease and publishes, 0 while it stands by.",
            labels,
            read=lambda: one(self.leading),
        )
        registry.gauge(
            "xdsbus_builder_lease_term",
            "The term this builder last led in, 0 before it first led.",
            labels,
            read=lambda: one(self.term),
        )
        registry.gauge(
            "xdsbus_builder_fold_backlog",
            "Events in the log not folded yet (the leader's consumer's pending count).",
            labels,
            read=lambda: one(self.backlog),
        )
        registry.gauge(
            "xdsbus_builder_version",
            "The ledger head version this builder published or adopted, while it leads.",
            labels,
            read=lambda: one(self.version if self.leading else None),
        )
        registry.gauge(
            "xdsbus_builder_version_age_seconds",
            "Seconds since this builder last published a version.",
            labels,
            read=lambda: age(self.published_at),
        )
        registry.gauge(
            "xdsbus_builder_checkpoint_age_seconds",
            "Seconds since this builder last saved a checkpoint.",
            labels,
            read=lambda: age(self.checkpoint_at),
        )
        registry.gauge(
            "xdsbus_builder_blocked",
            "1 while publishing is blocked, by reason: gap (events missing from the log) or log_full.",
            ["scope", "reason"],
            read=lambda: {
                (self.scope, "gap"): float(self.gap is not None),
                (self.scope, "log_full"): float(self.log_full is not None),
            },
        )

    def published(self, version: int) -> None:
        """A version was published."""
        self.version = version
        self.published_at = time.monotonic()

    def blocked(self) -> str | None:
        """Why this builder cannot publish (a /ready check); None when nothing blocks it."""
        reasons = [r for r in (self.gap, self.log_full) if r is not None]
        return "; ".join(reasons) if reasons else None
