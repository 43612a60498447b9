"""Per-file status in NATS KV `xdsbus_status`: what was rejected in which file, and why.

One key per file, `source.file.<source name>.<relative path>`, written when a file has errors and
switched to "accepted" once it is fixed; the key of a file that no longer exists is deleted. Writes are
diffed against what this process knows is stored, so a quiet directory costs no KV traffic.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from collections.abc import Iterable, Mapping

from nats.errors import Error as NatsError
from nats.js.kv import KeyValue

from xdsbus_watch_file.manifests import ManifestError

log = logging.getLogger(__name__)

STATUS_KIND = "File"
ACCEPTED = "accepted"
REJECTED = "rejected"

# KV keys allow only these characters, and '.' separates tokens, which must not be empty.
_KEY_UNSAFE = re.compile(r"[^-/_=.a-zA-Z0-9]")
_DOTS = re.compile(r"\.{2,}")


def _key_part(text: str) -> str:
    return _DOTS.sub(".", _KEY_UNSAFE.sub("_", text)).strip(".") or "_"


def status_prefix(source_name: str) -> str:
    """Prefix of every status key of one file source (ends with '.')."""
    return f"source.file.{_key_part(source_name)}."


def status_key(source_name: str, path: str) -> str:
    """KV key of the status of the file at `path` (relative to the watched directory)."""
    return status_prefix(source_name) + _key_part(path)


@dataclasses.dataclass(frozen=True, slots=True)
class FileStatus:
    """The status of one file, as stored (JSON) in the KV bucket."""

    path: str
    source: str
    errors: tuple[ManifestError, ...]

    @property
    def state(self) -> str:
        return REJECTED if self.errors else ACCEPTED

    def encode(self) -> bytes:
        """JSON: object, state, reason (every error, '; '-separated), and errors with their lines.

        kind/source/key/state/reason are also the fields of the builder's per-object statuses
        (xdsbus.contract.status.ObjectStatus), so `xdsbus status` lists files next to objects."""
        value = {
            "kind": STATUS_KIND,
            "key": self.path,
            "object": f"file:{self.path}",
            "source": self.source,
            "state": self.state,
            "reason": "; ".join(str(e) for e in self.errors),
            "errors": [{"line": e.line, "reason": e.reason} for e in self.errors],
        }
        return json.dumps(value, sort_keys=True).encode()


class StatusReporter:
    """Keeps the status keys of one source in line with its files' errors."""

    def __init__(self, kv: KeyValue, source: str) -> None:
        self.kv = kv
        self.source = source
        self.source_name = source.partition("/")[2]
        self._stored: dict[str, bytes] = {}
        self._wanted: dict[str, bytes | None] = {}

    async def load(self) -> None:
        """Read the status keys stored for this source (a previous run may have left rejections that
        have been fixed since, or files that are gone). Call at every resync."""
        stored: dict[str, bytes] = {}
        watcher = await self.kv.watch(status_prefix(self.source_name) + ">", ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:  # the end of what is stored
                    break
                if entry.value:
                    stored[entry.key] = entry.value
        finally:
            await watcher.stop()
        self._stored = stored

    def update(self, paths: Iterable[str], errors: Mapping[str, Iterable[ManifestError]]) -> None:
        """Set what should be stored: `paths` are all files present, `errors` the errors per file."""
        wanted: dict[str, bytes | None] = {}
        for path in paths:
            key = status_key(self.source_name, path)
            status = FileStatus(path, self.source, tuple(errors.get(path, ())))
            # A file that was never rejected gets no key; one that was gets "accepted" once fixed.
            if status.errors or key in self._stored:
                wanted[key] = status.encode()
        for key in self._stored:
            wanted.setdefault(key, None)  # the file is gone: so is its status
        self._wanted = wanted

    async def flush(self) -> None:
        """Write what differs from what is stored. Failures are logged and retried at the next flush,
        so a NATS hiccup never stops the watcher from publishing events."""
        for key, value in sorted(self._wanted.items()):
            if self._stored.get(key) == value:
                continue
            try:
                if value is None:
                    await self.kv.delete(key)
                    self._stored.pop(key, None)
                else:
                    await self.kv.put(key, value)
                    self._stored[key] = value
            except (TimeoutError, NatsError) as exc:
                log.warning("cannot write status %s (%s); will retry", key, exc)
                return
        self._wanted = {k: v for k, v in self._wanted.items() if v is not None}
