"""FileWatcher: publishes the objects of a directory of manifests to the event log.

State, in three layers:
- per file, the objects it *holds*: what it last parsed to, or, while it is broken, what it held before
  (a file we cannot read may still hold anything, so nothing it held is deleted);
- the *desired* objects: every file's held objects merged in path order, the first file winning a key;
- the *present* objects: what the builder has been told exists since the last resync began.
Each poll reads changed files and recomputes desired for the objects those files held before or hold
now (which file holds each object is kept), and publishes only their difference from present: a change
costs what the changed files hold, not what the directory holds. A resync (each `watch()`, so each new
term) recomputes and publishes everything. WasmPlugins are resolved again at every change, as their
module digest may follow a tag or a pull Secret in another file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Iterable
from pathlib import Path

from xdsbus.bus import Bus
from xdsbus.secretbox import SecretBox
from xdsbus.wasm.fetcher import ModuleFetcher
from xdsbus.wasm.resolver import ModuleResolver
from xdsbus.watcher import Watcher
from xdsbus_watch_file.manifests import KNOWN_KINDS, Manifest, ManifestError, ObjectId, parse_manifests
from xdsbus_watch_file.scanner import DirectoryScanner, FileChange
from xdsbus_watch_file.status import StatusReporter
from xdsbus_watch_file.wasm_modules import WASM_PLUGIN, published_body

log = logging.getLogger(__name__)

# Largest object body published (msgpack bytes): the event must fit nats-server's default 1 MiB
# max_payload with room to spare, and a config object this large is almost certainly a mistake.
MAX_OBJECT_BYTES = 512 * 1024

DEFAULT_POLL_INTERVAL = 0.2


def default_source_name(directory: Path) -> str:
    """The basename of the directory (`examples` for `./examples/`), after normalising `.` and `..`."""
    return os.path.basename(os.path.abspath(directory)) or "root"


@dataclasses.dataclass(slots=True)
class _FileState:
    held: dict[ObjectId, Manifest]  # what the file contributes, in document order
    errors: tuple[ManifestError, ...]  # from its latest parse
    known: bool  # `held` is all the file holds (it parsed completely at least once in this process)


@dataclasses.dataclass(frozen=True, slots=True)
class _OpenSync:
    epoch: int
    kinds: frozenset[str]


class FileWatcher(Watcher):
    """Watches `directory` (recursively) and publishes one event per manifest object as `file/<name>`."""

    def __init__(
        self,
        bus: Bus,
        directory: Path,
        *,
        source_name: str | None = None,
        poll_interval: float = DEFAULT_POLL_INTERVAL,
        max_object_bytes: int = MAX_OBJECT_BYTES,
        secret_box: SecretBox | None = None,
        stop: asyncio.Event | None = None,
        instance_id: str | None = None,
        lease_ttl: float | None = None,
    ) -> None:
        name = source_name or default_source_name(directory)
        super().__init__(
            bus,
            f"file/{name}",
            secret_box=secret_box,
            stop=stop,
            instance_id=instance_id,
            lease_ttl=lease_ttl,
        )
        self.directory = directory
        self.poll_interval = poll_interval
        self.max_object_bytes = max_object_bytes
        self._scanner = DirectoryScanner(directory)
        self._status = StatusReporter(bus, self.source)
        # Kept across calls of watch(): what a file held is knowledge worth keeping while it is broken.
        self._files: dict[str, _FileState] = {}
        self._present: dict[ObjectId, str | None] = {}  # rev told to the builder; None: not published
        # The merge of every file's held objects, kept up to date file by file: the winning manifest of
        # each object, the files holding each object, and each file's merge errors.
        self._desired: dict[ObjectId, Manifest] = {}
        self._holders: dict[ObjectId, set[str]] = {}
        self._merge_errors: dict[str, list[ManifestError]] = {}
        self._open_sync: _OpenSync | None = None
        self._logged_errors: dict[str, tuple[ManifestError, ...]] = {}
        self._deferral_logged = False
        # WasmPlugins without a sha256 get their module digest recorded (docs/wasm-modules.md).
        self._modules = ModuleResolver(ModuleFetcher())

    async def watch(self) -> None:
        """Resync from a full read of the directory, then publish changes every poll interval."""
        scan = self._scanner.scan(full=True)  # raises SourceUnavailable before any event is sent
        await self._status.load()
        for path in set(self._files) - scan.paths:
            del self._files[path]
        for path in scan.paths - {c.path for c in scan.changes}:
            # Present but not read (being written): unknown until the next poll reads it.
            self._files.setdefault(path, _FileState(held={}, errors=(), known=False))
        # A resync starts from nothing told: every object is upserted again (the fold ignores what it
        # already holds) and the sync_end's key list, not deletions, removes what is gone.
        self._present = {}
        self._open_sync = None
        self._deferral_logged = False
        await self._apply(scan.changes, resync=True)
        while not self.stop.is_set():
            try:
                await asyncio.wait_for(self.stop.wait(), timeout=self.poll_interval)
            except TimeoutError:
                pass
            else:
                return
            changes = self._scanner.scan().changes
            self.source_seen()
            if changes:
                await self._apply(changes, resync=False)
            else:
                await self._status.flush()  # retries a status write that failed earlier

    async def _apply(self, changes: list[FileChange], *, resync: bool) -> None:
        touched: set[ObjectId] = set()
        for change in changes:
            before = self._files.get(change.path)
            self._absorb(change)
            after = self._files.get(change.path)
            if after is None:
                self._merge_errors.pop(change.path, None)
            self._rehold(change.path, before.held if before else {}, after.held if after else {})
            touched.update(before.held if before else ())
            touched.update(after.held if after else ())
        if resync:
            # Files that vanished or appeared unread outside `changes` (see watch()) count as well.
            self._rebuild_holders()
            touched = set(self._holders) | set(self._present)
        self._merge(touched)
        desired = self._desired
        if resync:
            kinds = frozenset(KNOWN_KINDS | {oid.kind for oid in desired})
            self._open_sync = _OpenSync(await self.begin_sync(kinds), kinds)
            log.info(
                "%s: resync of %s: %d objects in %d files",
                self.source,
                self.directory,
                len(desired),
                len(self._files),
                extra={"epoch": self._open_sync.epoch},
            )
        # WasmPlugins are resolved again at every change (see the module's docstring).
        touched.update(oid for oid in desired if oid.kind == WASM_PLUGIN)
        async with self.pipelined():
            await self._publish_changes(touched)
        await self._close_sync(desired)
        errors = {
            path: state.errors + tuple(self._merge_errors.get(path, ()))
            for path, state in self._files.items()
        }
        self._log_errors(errors)
        self._status.update(self._files, errors)
        # Last in the cycle: once a file's status is visible, every event of the same change is stored.
        await self._status.flush()

    def _rehold(self, path: str, before: Iterable[ObjectId], after: Iterable[ObjectId]) -> None:
        """Record that `path` now holds `after` instead of `before`."""
        for oid in before:
            holders = self._holders.get(oid)
            if holders is not None:
                holders.discard(path)
                if not holders:
                    del self._holders[oid]
        for oid in after:
            self._holders.setdefault(oid, set()).add(path)

    def _rebuild_holders(self) -> None:
        self._holders = {}
        self._desired = {}
        for path, state in self._files.items():
            for oid in state.held:
                self._holders.setdefault(oid, set()).add(path)
        self._merge_errors = {}

    def _absorb(self, change: FileChange) -> None:
        """Update what one file holds after it changed."""
        previous = self._files.get(change.path)
        if change.removed:
            self._files.pop(change.path, None)
            return
        if change.data is None:  # unreadable
            error = ManifestError(change.path, None, change.error or "cannot read")
            self._files[change.path] = _FileState(
                held=previous.held if previous else {},
                errors=(error,),
                known=previous.known if previous else False,
            )
            return
        parsed = parse_manifests(change.path, change.data)
        held = {m.id: m for m in parsed.objects}
        if not parsed.parsed:
            # The file is unknown: everything it held stays exactly as it was.
            held = previous.held if previous else {}
        elif not parsed.complete and previous is not None:
            # Some document could not be identified; it may be an object the file held before (a name
            # deleted by mistake), so objects that vanished from the file are kept until it is fixed.
            for oid, manifest in previous.held.items():
                held.setdefault(oid, manifest)
        known = parsed.complete or (previous is not None and previous.known)
        self._files[change.path] = _FileState(held=held, errors=parsed.errors, known=known)

    def _merge(self, touched: set[ObjectId]) -> None:
        """Bring the desired objects (first file in path order wins a key) up to date for `touched`,
        and the merge errors of every file holding one of them."""
        paths: set[str] = set()
        for oid in touched:
            holders = self._holders.get(oid)
            if not holders:
                self._desired.pop(oid, None)
                continue
            self._desired[oid] = self._files[min(holders)].held[oid]
            paths.update(holders)
        for path in paths:
            self._merge_errors.pop(path, None)
            state = self._files.get(path)
            if state is None:
                continue
            errors = [
                ManifestError(
                    path,
                    manifest.line,
                    f"{oid} is also defined in {self._desired[oid].where}, which wins (first file in path "
                    f"order); the definition in {path} is ignored",
                )
                for oid, manifest in state.held.items()
                if self._desired[oid].path != path
            ]
            errors.extend(
                ManifestError(
                    path,
                    manifest.line,
                    f"{oid} is too large: {manifest.size} bytes encoded, more than the limit of "
                    f"{self.max_object_bytes}; it is not published (the last published version stays)",
                )
                for oid, manifest in state.held.items()
                if self._desired[oid].path == path and manifest.size > self.max_object_bytes
            )
            if errors:
                self._merge_errors[path] = errors

    async def _publish_changes(self, touched: set[ObjectId]) -> None:
        """Of the `touched` objects, upsert what is new or changed, delete what is present and no
        longer desired."""
        desired = self._desired
        for oid in sorted(touched & desired.keys()):
            manifest = desired[oid]
            if manifest.size > self.max_object_bytes:
                # Still there, only unpublishable: neither upserted nor deleted, and listed at sync_end.
                self._present.setdefault(oid, None)
                continue
            body, rev = await published_body(self._modules, manifest, desired)
            if self._present.get(oid) != rev:
                # Refused (reported by the base class): present, its last published version stays.
                published = await self.upsert(oid.kind, oid.key, body, rev=rev)
                self._present[oid] = rev if published else self._present.get(oid)
        for oid in sorted(touched & self._present.keys() - desired.keys()):
            if await self.delete(oid.kind, oid.key):
                del self._present[oid]

    async def _close_sync(self, desired: dict[ObjectId, Manifest]) -> None:
        """Emit the open resync's sync_end once every file's content is known.

        While a file has never parsed completely we cannot tell what it holds; ending the resync would
        make the builder drop its objects. So the sync_end waits, and nothing is deleted meanwhile."""
        sync = self._open_sync
        if sync is None:
            return
        unknown = sorted(path for path, state in self._files.items() if not state.known)
        if unknown:
            if not self._deferral_logged:
                log.warning(
                    "%s: resync stays open (no deletions) until these files parse: %s",
                    self.source,
                    ", ".join(unknown),
                )
                self._deferral_logged = True
            return
        kinds = {oid.kind for oid in desired}
        if not kinds <= sync.kinds:
            # A kind appeared that the open resync did not announce; a fresh one covering it lets the
            # builder also drop that kind's keys from earlier runs. Its key lists decide, not upserts.
            all_kinds = frozenset(sync.kinds | kinds)
            sync = _OpenSync(await self.begin_sync(all_kinds), all_kinds)
        keys: dict[str, list[str]] = {kind: [] for kind in sync.kinds}
        for oid in desired:
            keys[oid.kind].append(oid.key)
        await self.end_sync(sync.epoch, keys)
        self._open_sync = None
        if self._deferral_logged:
            log.info("%s: every file parses again; resync complete", self.source)

    def _log_errors(self, errors: dict[str, tuple[ManifestError, ...]]) -> None:
        """Log each file's errors when they change (not at every poll), and when a file is fixed."""
        for path in sorted(set(errors) | set(self._logged_errors)):
            now = errors.get(path, ())
            before = self._logged_errors.get(path, ())
            if now == before:
                continue
            for error in _new(now, before):
                log.error(
                    "%s: rejected %s",
                    self.source,
                    error,
                    extra={"file": error.path, "line": error.line, "reason": error.reason},
                )
            if before and not now and path in errors:
                log.info("%s: %s accepted", self.source, path, extra={"file": path})
            if now:
                self._logged_errors[path] = now
            else:
                self._logged_errors.pop(path, None)


def _new(now: Iterable[ManifestError], before: Iterable[ManifestError]) -> list[ManifestError]:
    seen = set(before)
    return [e for e in now if e not in seen]
