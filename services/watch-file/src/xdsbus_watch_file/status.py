"""Per-file status in NATS KV `xdsbus_status`: what was rejected in which file, and why.

One entry per file (kind `File`, source `file/<name>`, key the path relative to the watched directory),
written through xdsbus.status_store when a file has errors and switched to "accepted" once it is fixed;
the entry of a file that no longer exists is deleted. Writes are diffed against what this process knows
is stored, so a quiet directory costs no KV traffic.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from nats.errors import Error as NatsError

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import LineError, ObjectStatus, Verdict
from xdsbus_watch_file.manifests import ManifestError

log = logging.getLogger(__name__)

STATUS_KIND = "File"
# Before the contract's key scheme, entries were stored as `source.file.<name>.<path>`. An upgrade
# leaves them in the bucket, where `xdsbus status` would list every file a second time: each source
# removes its own at every resync.
_LEGACY_KV_PREFIX = "source.file."


def file_status(source: str, path: str, errors: Iterable[ManifestError]) -> ObjectStatus:
    """The status of one file: rejected with every error (`reason` joins them, `errors` keeps their
    lines) or accepted."""
    errors = tuple(errors)
    return ObjectStatus(
        kind=STATUS_KIND,
        source=source,
        key=path,
        state=Verdict.REJECTED if errors else Verdict.ACCEPTED,
        reason="; ".join(str(e) for e in errors),
        errors=[LineError(reason=e.reason, line=e.line) for e in errors],
    )


class StatusReporter:
    """Keeps the status entries of one source in line with its files' errors."""

    def __init__(self, bus: Bus, source: str) -> None:
        self.bus = bus
        self.source = source
        # path -> what is stored; path -> what should be (None: no entry)
        self._stored: dict[str, ObjectStatus] = {}
        self._wanted: dict[str, ObjectStatus | None] = {}

    async def load(self) -> None:
        """Read the entries stored for this source (a previous run may have left rejections that have
        been fixed since, or files that are gone). Call at every resync."""
        await status_store.delete_legacy(self.bus, _LEGACY_KV_PREFIX, self.source)
        self._stored = {s.key: s for s in await status_store.read_source(self.bus, STATUS_KIND, self.source)}

    def update(self, paths: Iterable[str], errors: Mapping[str, Iterable[ManifestError]]) -> None:
        """Set what should be stored: `paths` are all files present, `errors` the errors per file."""
        wanted: dict[str, ObjectStatus | None] = {}
        for path in paths:
            status = file_status(self.source, path, errors.get(path, ()))
            # A file that was never rejected gets no entry; one that was gets "accepted" once fixed.
            if status.errors or path in self._stored:
                wanted[path] = status
        for path in self._stored:
            wanted.setdefault(path, None)  # the file is gone: so is its status
        self._wanted = wanted

    async def flush(self) -> None:
        """Write what differs from what is stored. Failures are logged and retried at the next flush,
        so a NATS hiccup never stops the watcher from publishing events."""
        for path, status in sorted(self._wanted.items()):
            if self._stored.get(path) == status:
                continue
            try:
                if status is None:
                    await status_store.delete(self.bus, STATUS_KIND, self.source, path)
                    self._stored.pop(path, None)
                else:
                    await status_store.put(self.bus, status)
                    self._stored[path] = status
            except (TimeoutError, NatsError) as exc:
                log.warning("cannot write the status of %s (%s); will retry", path, exc)
                return
        self._wanted = {k: v for k, v in self._wanted.items() if v is not None}
