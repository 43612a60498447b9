"""Following one scope's ledger and turning each complete version into a Snapshot.

At start: the ledger head, its resource set (`reader.resource_set`), every body fetched and verified.
Then an ordered consumer on `xdsbus.ledger.<scope>` from the record after the head. For each record the
follower applies its changes to the ledger state (ledger_state.py: the served snapshot plus the keys the
newest version changes), checks the state against the record's digest, fetches the bodies it lacks
(content-addressed: a body already held by another scope is reused), and only when every body is there
and verified switches to a new immutable Snapshot. Secret bodies are stored sealed and opened with the
edge's keyring (docs/design.md §5); one this edge cannot open makes its version incomplete like a
missing body. A version that cannot be completed is never served: the previous snapshot stays, the
reason is kept in `status()` and logged, and fetching is retried until a later version completes. A body
missing from NATS is an error an operator must see: it is logged once per version, naming the scope,
version, resource and sha256, counted (`on_missing`) and listed in `status()`. How long the served
version has been behind the ledger head is `lag()`, which `/ready` checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

import nats.errors
from nats.js import api

from xdsbus.backoff import Backoff
from xdsbus.bus import LEDGER_STREAM, Bus, ledger_subject
from xdsbus.contract import digest as digests
from xdsbus.contract.resources import ResourceKey
from xdsbus.ledger import reader
from xdsbus.ledger.store import (
    DIRECT_BATCH,
    DIRECT_BATCHES_IN_FLIGHT,
    BodyCorrupt,
    BodyMissing,
    BodySealed,
    fetch_stored_many,
    not_stored,
    open_body,
)
from xdsbus.proto.ledger.v1 import ledger_pb2
from xdsbus.secretbox import SecretBox
from xdsbus_edge.heap import TRIM_AFTER_CHANGES, release_free_memory
from xdsbus_edge.ledger_state import LedgerState, NotADigest, StateLoad, digest_bytes, key
from xdsbus_edge.snapshot import CachedResource, Snapshot, next_snapshot

log = logging.getLogger(__name__)

# Missing bodies listed by status() per version (all are counted).
MISSING_SHOWN = 20
# Bodies a version's load fetches per part: as many as the store reads in parallel (ledger/store.py).
FETCH_PART = DIRECT_BATCH * DIRECT_BATCHES_IN_FLIGHT


@dataclasses.dataclass(frozen=True)
class MissingBody:
    """A body a ledger version names that NATS does not hold: the version cannot be served."""

    scope: str
    version: int
    type_url: str
    name: str
    sha256: str

    def describe(self) -> str:
        return f"{self.type_url.rsplit('.', 1)[-1]} {self.name!r} (sha256 {self.sha256})"


class VersionIncomplete(Exception):
    """A ledger version whose resources cannot all be fetched and verified."""


class VersionSealed(VersionIncomplete):
    """A ledger version with a sealed body the keyring cannot open (no key, or not the sealing key)."""


# Finds a resource another scope already holds: (key, raw sha256) -> resource or None.
Lookup = Callable[[ResourceKey, bytes], "CachedResource | None"]


class LedgerFollower:
    """Follows `xdsbus.ledger.<scope>` and calls `on_snapshot` with each complete version."""

    def __init__(
        self,
        bus: Bus,
        scope: str,
        on_snapshot: Callable[[Snapshot], None],
        *,
        lookup: Lookup | None = None,
        on_rejected: Callable[[str, int, str], None] | None = None,
        keyring: SecretBox | None = None,
        on_sealed: Callable[[str, int], None] | None = None,
        on_missing: Callable[[MissingBody], None] | None = None,
        retry_base: float = 0.2,
        retry_cap: float = 5.0,
    ) -> None:
        self.bus = bus
        self.scope = scope
        self.on_snapshot = on_snapshot
        self.on_rejected = on_rejected
        self.lookup = lookup
        self.keyring = keyring
        # Told (scope, version) of each version not served for a body it could not open.
        self.on_sealed = on_sealed
        # Told of each body found missing (once per version and body).
        self.on_missing = on_missing
        self.missing: list[MissingBody] = []
        self._reported: set[MissingBody] = set()
        # Since when (monotonic) the ledger has a version newer than the one served; None: up to date.
        self._behind_since: float | None = None
        # The served snapshot and what the newest ledger version changes on top of it (ledger_state.py).
        self._state = LedgerState()
        self._record: ledger_pb2.Version | None = None
        # Set when the state could not follow a record (a gap, an unreadable change list): the next
        # switch rebuilds it from the ledger.
        self._stale = False
        # The resources found or fetched for pending keys (type URL -> name -> resource), kept across
        # retries of an incomplete version (one whose digest is no longer the key's pending one is
        # fetched again).
        self._staged: dict[str, dict[str, CachedResource]] = {}
        self._backoff = Backoff(base=retry_base, cap=retry_cap)
        self._retry_at: float | None = None
        self.last_error: str | None = None
        self.last_error_version: int | None = None
        self.rejected_versions = 0
        self.first_loaded = asyncio.Event()

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot served (None before the first complete version)."""
        return self._state.served

    @property
    def ledger_version(self) -> int:
        """The newest version read from the ledger (served or not)."""
        return self._record.version if self._record else 0

    def lag(self) -> float:
        """Seconds since the ledger got a version newer than the one served (0: serving the head)."""
        return 0.0 if self._behind_since is None else time.monotonic() - self._behind_since

    def status(self) -> dict[str, Any]:
        """What /debug pages show about this scope."""
        return {
            "lag_seconds": round(self.lag(), 3),
            "missing_bodies": [dataclasses.asdict(m) for m in self.missing],
            "scope": self.scope,
            "serving": self.snapshot.version if self.snapshot else None,
            "ledger_head": self.ledger_version or None,
            "resources": self.snapshot.resource_count() if self.snapshot else 0,
            "last_error": self.last_error,
            "last_error_version": self.last_error_version,
            "rejected_versions": self.rejected_versions,
        }

    async def run(self) -> None:
        """Follow the ledger until cancelled; start over (keeping the served snapshot) after a failure."""
        backoff = Backoff(base=0.5, cap=10.0)
        while True:
            try:
                await self._follow()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next_delay()
                log.warning(
                    "following the ledger of scope %s failed (%s); starting over in %.1fs",
                    self.scope,
                    exc or type(exc).__name__,
                    delay,
                    exc_info=not isinstance(exc, nats.errors.Error),
                )
                await asyncio.sleep(delay)

    async def _follow(self) -> None:
        sub = await self._start()
        try:
            while True:
                timeout = 1.0
                if self._retry_at is not None:
                    timeout = max(0.0, min(timeout, self._retry_at - time.monotonic()))
                try:
                    msg = await sub.next_msg(timeout=timeout or 0.001)
                except nats.errors.TimeoutError:
                    if self._retry_at is not None and time.monotonic() >= self._retry_at:
                        await self._try_switch()
                    continue
                await self._on_record(msg.data)
                # Catch up in one switch: apply every record already delivered before fetching.
                while sub.pending_msgs:
                    msg = await sub.next_msg(timeout=1.0)
                    await self._on_record(msg.data)
                await self._try_switch()
        finally:
            try:
                await sub.unsubscribe()
            except Exception:  # the connection may be closing; nothing to release then
                log.debug("unsubscribe from %s failed", ledger_subject(self.scope), exc_info=True)

    async def _start(self) -> Any:
        """Load the head version (retrying while the ledger cannot be read) and subscribe after it."""
        backoff = Backoff(base=0.2, cap=5.0)
        while True:
            try:
                head = await reader.head(self.bus, self.scope)
                # What differs from the served snapshot (everything at first; after a restart, what
                # changed since the snapshot still served) is pending until the next switch.
                loaded = await self._read(head.record.version) if head is not None else None
                break
            except (nats.errors.Error, reader.VersionNotFound, TimeoutError) as exc:
                delay = backoff.next_delay()
                log.warning(
                    "cannot read the ledger of scope %s (%s); retrying in %.1fs", self.scope, exc, delay
                )
                await asyncio.sleep(delay)
        config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        if head is not None and loaded is not None:
            loaded.finish()
            del loaded
            self._record = head.record
            self._stale = False
            self._note_head()
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=head.stream_seq + 1
            )
        # Heartbeats every second: a consumer lost with a NATS restart is recreated within ~2 s.
        sub = await self.bus.js.subscribe(
            ledger_subject(self.scope),
            stream=LEDGER_STREAM,
            ordered_consumer=True,
            config=config,
            idle_heartbeat=1.0,
        )
        if head is not None:
            await self._try_switch()
        else:
            log.info("scope %s has no ledger version yet; waiting for the first", self.scope)
        return sub

    async def _on_record(self, data: bytes) -> None:
        record = ledger_pb2.Version()
        record.ParseFromString(data)
        if reader.is_term(record):
            return  # a new builder's term record (docs/design.md §5, fencing): no version
        if record.version <= self.ledger_version:
            return  # already applied (a redelivery after the consumer was reset)
        previous, self._record = self.ledger_version, record
        self._note_head()
        if self._stale:
            return  # the state is rebuilt from the ledger at the next switch anyway
        if record.parent != previous:
            log.warning(
                "scope %s: version %d follows %d, not %d; reloading its resource set",
                self.scope,
                record.version,
                record.parent,
                previous,
            )
            self._stale = True
            return
        try:
            changes = await reader.changes_of(self.bus, record)
        except (nats.errors.Error, TimeoutError) as exc:
            log.warning(
                "scope %s: change list of version %d unreadable (%s); reloading",
                self.scope,
                record.version,
                exc,
            )
            self._stale = True
            return
        try:
            for ref in changes.changed:
                self._state.set(key(ref.type_url, ref.name), digest_bytes(ref.sha256))
        except NotADigest as exc:
            log.warning("scope %s: version %d: %s; reloading", self.scope, record.version, exc)
            self._stale = True
            return
        for gone in changes.removed:
            self._state.set(key(gone.type_url, gone.name), None)

    def _note_head(self) -> None:
        served = self.snapshot.version if self.snapshot else 0
        if self.ledger_version > served and self._behind_since is None:
            self._behind_since = time.monotonic()

    async def _read(self, version: int) -> StateLoad:
        """The ledger's resource set at `version`, read into a load of the state (it replaces the
        newest version at `finish`; a read that fails leaves the state as it was)."""
        loading = self._state.loading()
        parts = reader.version_parts(self.bus, self.scope, version)
        async with contextlib.aclosing(parts) as found:
            async for part in found:
                if isinstance(part, ledger_pb2.Changes):
                    loading.add_changes(part)
                else:
                    loading.add_set(part)
                del part  # a change list is not kept while the next one is read
        return loading

    async def _reload(self, record: ledger_pb2.Version) -> None:
        """Replace the ledger state by the full resource set at `record`'s version."""
        (await self._read(record.version)).finish()
        self._stale = False

    async def _try_switch(self) -> None:
        """Complete the newest version and serve it, or keep the served one and say why."""
        record = self._record
        if record is None:
            return
        if self.snapshot is not None and self.snapshot.version == record.version and not self._stale:
            # Already served (a restart found the same head): nothing differs from the snapshot.
            self._state.clear_pending()
            self._retry_at = None
            self._behind_since = None
            return
        try:
            if self._stale:
                await self._reload(record)
            if record.digest and self._state.hexdigest(record.digest_algorithm) != record.digest:
                # The applied changes do not add up to the version: rebuild the set from the ledger once.
                await self._reload(record)
                if self._state.hexdigest(record.digest_algorithm) != record.digest:
                    raise VersionIncomplete(
                        f"resource set does not match the version's digest {record.digest}"
                    )
            await self._resolve()
        except (
            VersionIncomplete,
            NotADigest,
            BodyMissing,
            BodyCorrupt,
            reader.VersionNotFound,
            digests.UnknownDigestAlgorithm,
        ) as exc:
            self._reject(
                record.version, str(exc) or type(exc).__name__, sealed=isinstance(exc, VersionSealed)
            )
            return
        except (nats.errors.Error, TimeoutError) as exc:
            self._reject(record.version, f"ledger unreadable: {exc or type(exc).__name__}")
            return
        self._switch(record)

    def _reject(self, version: int, reason: str, *, sealed: bool = False) -> None:
        if self.last_error_version != version:
            self.rejected_versions += 1
            if sealed and self.on_sealed:
                self.on_sealed(self.scope, version)
            log.warning(
                "scope %s: version %d not served: %s; still serving %s",
                self.scope,
                version,
                reason,
                self.snapshot.version if self.snapshot else "nothing",
                extra={"scope": self.scope, "version": version},
            )
            if self.on_rejected:
                self.on_rejected(self.scope, version, reason)
        self.last_error = f"version {version} not served: {reason}"
        self.last_error_version = version
        self._retry_at = time.monotonic() + self._backoff.next_delay()

    async def _resolve(self) -> None:
        """Stage a resource for every pending key the newest version holds; fetches (and verifies) the
        bodies no scope holds. Raises when one cannot be had."""
        staged = self._staged
        # What to fetch, as parallel lists of strings the state already holds: no key or pair per
        # resource next to the bodies arriving (ledger_state.Pending).
        missing_types: list[str] = []
        missing_names: list[str] = []
        missing_digests = bytearray()
        for type_url, name, digest in self._state.pending.entries():
            if digest is None:
                continue
            of_type = staged.setdefault(type_url, {})
            found = of_type.get(name)
            if found is not None and found.peek_digest() == digest:
                continue
            found = self.lookup(ResourceKey(type_url, name), digest) if self.lookup is not None else None
            if found is not None:
                of_type[name] = found
            else:
                missing_types.append(type_url)
                missing_names.append(name)
                missing_digests += digest
        if missing_names:
            failures: list[str] = []
            sealed: list[str] = []
            gone: list[MissingBody] = []
            version = self.ledger_version
            # A part at a time: the hex names and the replies of a part are freed before the next part's
            # are made, which reuse their memory. Made for a whole version at once, they left the
            # allocator's pools strewn between the bodies that stay (bench edge_memory: +2.5 MiB of RSS
            # at 21k resources).
            for start in range(0, len(missing_names), FETCH_PART):
                end = min(start + FETCH_PART, len(missing_names))
                wanted = [bytes(missing_digests[32 * i : 32 * i + 32]) for i in range(start, end)]
                shas = [digest.hex() for digest in wanted]
                stored = await fetch_stored_many(self.bus, shas)
                for type_url, name, digest, sha in zip(
                    missing_types[start:end], missing_names[start:end], wanted, shas, strict=True
                ):
                    found = stored.get(sha)
                    try:
                        if found is None:
                            gone.append(MissingBody(self.scope, version, type_url, name, sha))
                            raise not_stored(sha)
                        body = open_body(found, sha, self.keyring)
                    except BodySealed as exc:
                        sealed.append(f"{_what(type_url, name)}: {exc}")
                        continue
                    except (BodyMissing, BodyCorrupt) as exc:
                        failures.append(f"{_what(type_url, name)}: {exc}")
                        continue
                    staged[type_url][name] = CachedResource(type_url, name, digest, body)
                del stored, shas, wanted
            self._report_missing(version, gone)
            if sealed:
                more = f" (and {len(sealed) - 1} more)" if len(sealed) > 1 else ""
                raise VersionSealed(
                    f"cannot open {sorted(sealed)[0]}{more}; give this edge the keyring the builder seals"
                    " with (XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE)"
                )
            if failures:
                more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
                raise VersionIncomplete(sorted(failures)[0] + more)

    def _report_missing(self, version: int, gone: list[MissingBody]) -> None:
        """Log, count and list each body newly found missing for `version`; a retry of the same version
        finding the same bodies missing says nothing new."""
        fresh = sorted((m for m in gone if m not in self._reported), key=lambda m: (m.type_url, m.name))
        if not fresh:
            return
        for body in fresh:
            log.error(
                "scope %s: version %d names a body NATS does not hold: %s; the version is not served",
                body.scope,
                body.version,
                body.describe(),
                extra={"scope": body.scope, "version": body.version, "sha256": body.sha256},
            )
            if self.on_missing:
                self.on_missing(body)
        self._reported.update(fresh)
        self.missing = [m for m in self.missing if m.version == version]
        self.missing += fresh[: max(0, MISSING_SHOWN - len(self.missing))]

    def _switch(self, record: ledger_pb2.Version) -> None:
        pending, staged = self._state.pending, self._staged
        snapshot = next_snapshot(
            self.snapshot,
            scope=self.scope,
            version=record.version,
            digest=record.digest,
            changes=(
                (ResourceKey(t, n), None if sha is None else staged[t][n]) for t, n, sha in pending.entries()
            ),
            published_ns=record.time_unix_nano,
            translator_version=record.translator_version,
        )
        changed_count = len(pending)
        self._state.adopt(snapshot)
        self._staged = {}
        # The pending keys and staged resources of a load are garbage now: freed before the heap is
        # trimmed, not after (else their pages stay with the process).
        del pending, staged
        if changed_count >= TRIM_AFTER_CHANGES:
            release_free_memory()
        self._retry_at = None
        self._behind_since = None
        self.missing = []
        self._reported = set()
        self._backoff.reset()
        if self.last_error is not None:
            log.info(
                "scope %s: serving version %d again after %s", self.scope, record.version, self.last_error
            )
        self.last_error = None
        self.last_error_version = None
        log.info(
            "scope %s: serving version %d (%d resources, %d changed)",
            self.scope,
            snapshot.version,
            snapshot.resource_count(),
            changed_count,
        )
        self.first_loaded.set()
        self.on_snapshot(snapshot)


def _what(type_url: str, name: str) -> str:
    """A resource as a reason names it: `Cluster 'a'`."""
    return f"{type_url.rsplit('.', 1)[-1]} {name!r}"
