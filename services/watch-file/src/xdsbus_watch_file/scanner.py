"""Polling a directory tree for manifest files whose content changed.

Each scan lists the tree and stats every manifest file; only files whose stat signature changed are read,
and only files whose content hash changed are reported. Reads are synchronous on purpose: the files are
small, and a scan is a handful of syscalls per file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from pathlib import Path

from xdsbus.watcher import SourceUnavailable
from xdsbus_watch_file.manifests import is_manifest_name

# A file modified this recently may be modified again within the same timestamp tick with the same
# size (mtime is only as fine as the kernel's coarse clock), which its signature would not show: such
# files are re-read and compared by content until they are older than this.
RACY_WINDOW_NS = 2_000_000_000


@dataclasses.dataclass(frozen=True, slots=True)
class Signature:
    """What stat says about a file; any change means the file must be read again."""

    mtime_ns: int
    ctime_ns: int  # changes with permissions too: an unreadable file becoming readable
    size: int
    ino: int  # changes when the file is replaced by a rename (editors, ConfigMap volume swaps)

    @classmethod
    def of(cls, st: os.stat_result) -> Signature:
        return cls(mtime_ns=st.st_mtime_ns, ctime_ns=st.st_ctime_ns, size=st.st_size, ino=st.st_ino)

    def is_racy(self, now_ns: int) -> bool:
        return now_ns - max(self.mtime_ns, self.ctime_ns) < RACY_WINDOW_NS


@dataclasses.dataclass(frozen=True, slots=True)
class FileChange:
    """A manifest file whose content changed, appeared or disappeared, or that cannot be read."""

    path: str  # relative to the watched directory, '/'-separated
    data: bytes | None  # the new content; None when the file is gone or unreadable
    error: str | None = None  # set when the file exists but cannot be read

    @property
    def removed(self) -> bool:
        return self.data is None and self.error is None


@dataclasses.dataclass(frozen=True, slots=True)
class ScanResult:
    """One scan: the changes, and every manifest file present (some may not be readable yet)."""

    changes: list[FileChange]
    paths: frozenset[str]


@dataclasses.dataclass(frozen=True, slots=True)
class _Seen:
    signature: Signature
    digest: str | None  # None while the file cannot be read
    error: str | None


class DirectoryScanner:
    """Finds manifest files (*.yaml, *.yml, *.json) under `root`, recursively, and reports changes.

    Names starting with '.' are skipped, files and directories alike: editors' temporary files, and the
    `..data` / `..<timestamp>` directories of a mounted Kubernetes ConfigMap, whose files also appear
    through the symlinks at the top level."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._seen: dict[str, _Seen] = {}

    def scan(self, full: bool = False) -> ScanResult:
        """Changes since the previous scan, in path order; with `full`, every file present is reported
        (read afresh) as well as every file gone. A file being written during the scan is left for the
        next one. Raises SourceUnavailable when the directory, or any directory under it, cannot be
        listed: a tree we cannot see must not look like deleted files."""
        found = self._list()
        now = time.time_ns()
        changes: list[FileChange] = []
        for path in sorted(found):
            full_path, signature = found[path]
            previous = self._seen.get(path)
            if (
                not full
                and previous is not None
                and previous.signature == signature
                and previous.error is None
                and not previous.signature.is_racy(now)
            ):
                continue
            change = self._read(path, full_path, signature, previous, full)
            if change is not None:
                changes.append(change)
        for path in sorted(set(self._seen) - set(found)):
            del self._seen[path]
            changes.append(FileChange(path, None))
        return ScanResult(changes, frozenset(found))

    def _read(
        self, path: str, full_path: str, signature: Signature, previous: _Seen | None, full: bool
    ) -> FileChange | None:
        try:
            with open(full_path, "rb") as f:
                data = f.read()
                after = Signature.of(os.fstat(f.fileno()))
        except FileNotFoundError:
            # Gone between listing and reading: the next scan reports it as removed.
            return None
        except OSError as exc:
            error = f"cannot read: {exc.strerror or exc}"
            self._seen[path] = _Seen(signature, None, error)
            if full or previous is None or previous.error != error:
                return FileChange(path, None, error)
            return None
        if after != signature:
            # Being written right now: what we read may be half a file. Look again at the next scan.
            return None
        digest = hashlib.sha256(data).hexdigest()
        self._seen[path] = _Seen(signature, digest, None)
        if full or previous is None or previous.digest != digest:
            return FileChange(path, data)
        return None

    def _list(self) -> dict[str, tuple[str, Signature]]:
        found: dict[str, tuple[str, Signature]] = {}
        try:
            root_stat = os.stat(self.root)
        except OSError as exc:
            raise SourceUnavailable(f"cannot read directory {self.root}: {exc.strerror or exc}") from exc
        # Directory symlinks are followed; remembering each directory's identity stops symlink loops.
        visited = {(root_stat.st_dev, root_stat.st_ino)}
        pending: list[tuple[str, str]] = [(str(self.root), "")]
        while pending:
            directory, prefix = pending.pop()
            try:
                with os.scandir(directory) as it:
                    entries = list(it)
            except OSError as exc:
                raise SourceUnavailable(f"cannot read directory {directory}: {exc.strerror or exc}") from exc
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir():
                        st = entry.stat()
                        ident = (st.st_dev, st.st_ino)
                        if ident not in visited:
                            visited.add(ident)
                            pending.append((entry.path, f"{prefix}{entry.name}/"))
                    elif entry.is_file() and is_manifest_name(entry.name):
                        found[prefix + entry.name] = (entry.path, Signature.of(entry.stat()))
                except FileNotFoundError:
                    continue  # removed while listing, or a dangling symlink: not there
                except OSError as exc:
                    raise SourceUnavailable(f"cannot stat {entry.path}: {exc.strerror or exc}") from exc
        return found
