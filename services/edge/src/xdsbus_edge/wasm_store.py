"""The edge's disk cache of verified wasm modules, named by sha256 and bounded in bytes.

A module is written whole under a temporary name and renamed, so a reader never sees half of one, and
checked against its name when read back, so a file damaged on disk is dropped and fetched again rather
than served. Past the size bound the least recently served modules go first."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from pathlib import Path

from xdsbus.contract.wasm_modules import MODULE_SUFFIX, is_sha256

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 512 * 1024 * 1024


class ModuleStore:
    """Modules on disk in `directory`, at most `max_bytes` in all (one larger module is still kept)."""

    def __init__(self, directory: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def open(self) -> None:
        """Create the directory, and drop what an interrupted write left."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for leftover in self.directory.glob("*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()

    def _path(self, sha256: str) -> Path:
        if not is_sha256(sha256):
            raise ValueError(f"not a sha256: {sha256!r}")
        return self.directory / f"{sha256}{MODULE_SUFFIX}"

    async def get(self, sha256: str) -> bytes | None:
        """The module with this digest, or None when it is not here (or was damaged: then it is dropped)."""
        return await asyncio.to_thread(self._get, sha256)

    async def put(self, sha256: str, data: bytes) -> None:
        """Keep a verified module, then trim the cache to its bound."""
        await asyncio.to_thread(self._put, sha256, data)

    def usage(self) -> tuple[int, int]:
        """(modules, bytes) held."""
        sizes = [entry.stat().st_size for entry in self._entries()]
        return len(sizes), sum(sizes)

    def _get(self, sha256: str) -> bytes | None:
        path = self._path(sha256)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).hexdigest() != sha256:
            log.warning("wasm module cache: %s does not match its digest: dropped", path)
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        # The modification time orders eviction: the most recently served module is kept longest.
        with contextlib.suppress(OSError):
            os.utime(path)
        return data

    def _put(self, sha256: str, data: bytes) -> None:
        path = self._path(sha256)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
        self._trim(keep=path)

    def _entries(self) -> list[Path]:
        return [
            p
            for p in self.directory.glob(f"*{MODULE_SUFFIX}")
            if is_sha256(p.name.removesuffix(MODULE_SUFFIX))
        ]

    def _trim(self, keep: Path) -> None:
        entries = []
        for entry in self._entries():
            with contextlib.suppress(FileNotFoundError):
                stat = entry.stat()
                entries.append((stat.st_mtime_ns, entry.name, entry, stat.st_size))
        total = sum(size for *_, size in entries)
        for _, _, entry, size in sorted(entries):
            if total <= self.max_bytes:
                break
            if entry == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                total -= size
                log.info("wasm module cache: evicted %s (cache over %d bytes)", entry.name, self.max_bytes)
