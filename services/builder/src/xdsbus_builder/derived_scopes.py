"""The derived scopes' ledgers (docs/design.md §5, "Per-Gateway scopes"), published by the leader of the
`default` scope from the same fold.

Each Gateway's scope `gateway.<namespace>.<name>` (translate/gateway_scopes.py) has its own ledger
subject and LedgerPublisher. Its versions carry the same numbers as the shared scope's (the last folded
event sequence) and are published in the same flush, after the shared version; a scope publishes a
version only when its own resources changed, with its own digest. A term fences each derived subject
the first time the term publishes there: the publisher continues after the subject's newest record and
the resources it holds, read from the ledger (derived scopes are not in checkpoints: they are rebuilt
from the fold, so a restore is a full build plus this read).

A scope whose Gateway goes away is not published any more: its last version stays what the edges serve,
so an Envoy never gets an empty listener list by accident, and its status (`xdsbus status`, kind
`GatewayScope`) says the Gateway is gone. A Gateway that comes back continues its scope's ledger.
"""

from __future__ import annotations

import logging

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.scopes import DEFAULT_SCOPE, GATEWAY_SCOPE_PREFIX
from xdsbus.contract.status import ObjectStatus, Verdict
from xdsbus.lease import Lease
from xdsbus.ledger import reader, sweep
from xdsbus.ledger.publisher import LedgerPublisher
from xdsbus.secretbox import SecretBox
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.translator import Translator

log = logging.getLogger(__name__)

STATUS_KIND = "GatewayScope"


class _Live:
    """A derived scope published during this term: its table (as the translator keeps it) and ledger."""

    def __init__(self, table: ResourceTable, publisher: LedgerPublisher, gateway: str) -> None:
        self.table = table
        self.publisher = publisher
        self.gateway = gateway


class DerivedScopes:
    """The derived scopes of one term of leadership."""

    def __init__(
        self, bus: Bus, scope: str, translator_version: str, lease: Lease, secret_box: SecretBox | None
    ) -> None:
        self.bus = bus
        # Derived scopes are the `default` scope's: a proxy names a Gateway, not a scope.
        self.enabled = scope == DEFAULT_SCOPE
        self.source = f"builder/{scope}"
        self.translator_version = translator_version
        self.lease = lease
        self.secret_box = secret_box
        self._live: dict[str, _Live] = {}
        # The derived scopes the ledger held when this term began (None: not read yet).
        self._on_ledger: set[str] | None = None

    async def publish(self, translator: Translator, version: int) -> None:
        """Publish, as `version`, every derived scope whose resources changed; retire the scopes whose
        Gateway is gone."""
        if not self.enabled:
            return
        scopes = translator.gateway_scopes
        scopes.refresh()
        if self._on_ledger is None:
            self._on_ledger = {s for s in await sweep.scopes(self.bus) if s.startswith(GATEWAY_SCOPE_PREFIX)}
        live = scopes.scopes()
        statuses: list[ObjectStatus] = []
        for scope in live:
            table = scopes.table(scope)
            entry = self._live.get(scope)
            if entry is None or entry.table is not table:
                ref = scopes.gateway(scope)
                entry = await self._start(scope, table, f"{ref.key} ({ref.source})")
                self._live[scope] = entry
                statuses.append(self._status(scope, Verdict.ACCEPTED, self._serving(entry)))
            changes = table.commit()
            if not changes:
                continue
            record = await entry.publisher.publish(
                version=version,
                first_seq=entry.publisher.head_version + 1,
                changes=changes,
                digest=table.digest(),
                resource_count=len(table),
            )
            log.info(
                "scope %s version %d: %d changed, %d removed, %d resources, digest %s",
                scope,
                record.version,
                record.changed_count,
                record.removed_count,
                record.resource_count,
                record.digest[:12],
            )
        gone = (self._live.keys() | self._on_ledger) - set(live)
        for scope in sorted(gone):
            entry = self._live.pop(scope, None)
            self._on_ledger.discard(scope)
            statuses.append(self._status(scope, Verdict.REJECTED, await self._retired(scope, entry)))
        self._on_ledger |= set(live)
        if statuses:
            await status_store.publish(self.bus, statuses)

    async def _start(self, scope: str, table: ResourceTable, gateway: str) -> _Live:
        """Continue a derived scope's ledger in this term: after its newest record, from the resources
        its head holds, behind this term's term record."""
        publisher = LedgerPublisher(self.bus, scope, self.translator_version, self.secret_box)
        tip = await reader.tip(self.bus, scope)
        head = tip.head.record.version if tip.head is not None else 0
        publisher.adopt_head(tip.last_stream_seq, head)
        table.set_committed(await reader.resource_set(self.bus, scope, head) if head else {})
        await publisher.publish_term(self.lease.term, self.lease.holder)
        log.info("derived scope %s of Gateway %s: continuing after version %d", scope, gateway, head)
        return _Live(table, publisher, gateway)

    def _serving(self, entry: _Live) -> str:
        return (
            f"Gateway {entry.gateway}: its listeners, routes, clusters, endpoints and secrets, for the "
            f"Envoys whose node metadata has XDSBUS_GATEWAY={entry.gateway.split(' ', 1)[0]}"
        )

    async def _retired(self, scope: str, entry: _Live | None) -> str:
        head = entry.publisher.head_version if entry is not None else None
        if head is None:
            tip = await reader.tip(self.bus, scope)
            head = tip.head.record.version if tip.head is not None else 0
        gateway = entry.gateway if entry is not None else scope.removeprefix(GATEWAY_SCOPE_PREFIX)
        return (
            f"Gateway {gateway} is gone (deleted, or its GatewayClass is not ours): scope {scope} is no "
            f"longer published and keeps version {head}, which its Envoys keep serving"
        )

    def _status(self, scope: str, state: Verdict, reason: str) -> ObjectStatus:
        return ObjectStatus(kind=STATUS_KIND, source=self.source, key=scope, state=state, reason=reason)
