"""Fetching a module and checking it against the sha256 it is expected to have."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import aiohttp

from xdsbus.wasm import downloads
from xdsbus.wasm.credentials import Credentials
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus.wasm.sources import fetch_source

# Seconds one fetch may take in all (manifest, token, blob); a registry that hangs fails the fetch.
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Module:
    """Verified module bytes, their sha256 (hex) and the URL that names exactly these bytes."""

    wasm: bytes
    sha256: str
    url: str


def sha256_hex(data: bytes) -> str:
    """The lower-case hex sha256 of `data`, as modules are named."""
    return hashlib.sha256(data).hexdigest()


def normalize_sha256(value: str) -> str:
    """A plugin's `sha256` as written (`sha256:` prefix or upper case allowed) in the form modules are
    named by."""
    return value.strip().lower().removeprefix("sha256:")


class ModuleFetcher:
    """Fetches modules over one HTTP session (open it with `async with`, or pass a session)."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None = None,
        *,
        max_bytes: int = downloads.DEFAULT_MAX_BYTES,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self._own = session is None
        self._session = session
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __aenter__(self) -> ModuleFetcher:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this fetcher opened (a session passed in stays open)."""
        if self._own and self._session is not None:
            await self._session.close()
            self._session = None

    async def fetch(self, url: str, *, sha256: str = "", credentials: Credentials | None = None) -> Module:
        """The module at `url`; with `sha256`, only bytes that hash to it (else ModuleFetchError with
        reason `bad_digest`). Without an open session, one is opened for this fetch alone."""
        if self._session is not None:
            return await self._fetch(self._session, url, sha256, credentials)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
            return await self._fetch(session, url, sha256, credentials)

    async def _fetch(
        self, session: aiohttp.ClientSession, url: str, sha256: str, credentials: Credentials | None
    ) -> Module:
        fetched = await fetch_source(session, url, credentials=credentials, max_bytes=self.max_bytes)
        actual = sha256_hex(fetched.module)
        expected = normalize_sha256(sha256) if sha256 else ""
        if expected and actual != expected:
            raise ModuleFetchError(
                f"module url {url}: expected sha256 {expected}, the module fetched hashes to {actual}",
                "bad_digest",
            )
        return Module(wasm=fetched.module, sha256=actual, url=fetched.url)
