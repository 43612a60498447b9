"""The builder's status of the Ingress HTTP port's route table (docs/route-table-split.md): one table or
split, into how many tables and why, in KV xdsbus_status (`xdsbus status Builder/http.<port>`) and the
log, written when it changes."""

from __future__ import annotations

import logging

from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.translate.route_table_choice import RouteTableChoice
from xdsbus_builder import gaps

log = logging.getLogger(__name__)


def key(port: int) -> str:
    """The entry's key: the port's route configuration name."""
    return f"http.{port}"


class RouteTableStatus:
    """The last entry written for one scope, so that only a change is written again."""

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._reported: ObjectStatus | None = None
        self._tables: int | None = None

    def changed(self, choice: RouteTableChoice) -> ObjectStatus | None:
        """The entry for `choice` when it differs from the last one taken (None: unchanged)."""
        entry = ObjectStatus(
            kind=gaps.KIND,
            source=gaps.source(self.scope),
            key=key(choice.port),
            state=Verdict.ACCEPTED,
            reason=choice.describe(),
        )
        if entry == self._reported:
            return None
        if choice.tables != self._tables:
            # The log says when the form changes, not each host count.
            log.info("scope %s: route table %s: %s", self.scope, entry.key, entry.reason)
            self._tables = choice.tables
        self._reported = entry
        return entry
