"""Fetching a module's bytes from its URL, whatever the scheme: an OCI image (oci_client.py), an
http(s) URL, or a local file. What comes back is checked to be WebAssembly; its sha256 is checked by the
caller (fetcher.py)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiohttp

from xdsbus.wasm import downloads
from xdsbus.wasm.credentials import Credentials
from xdsbus.wasm.errors import ModuleFetchError
from xdsbus.wasm.oci_client import RegistryClient
from xdsbus.wasm.oci_layouts import WASM_MAGIC
from xdsbus.wasm.references import parse_image, scheme_of


@dataclass(frozen=True)
class Fetched:
    """A module's bytes and the URL that names exactly them (an image pinned by manifest digest, or the
    URL as given for http(s) and files)."""

    module: bytes
    url: str


async def fetch_source(
    session: aiohttp.ClientSession,
    url: str,
    *,
    credentials: Credentials | None = None,
    max_bytes: int = downloads.DEFAULT_MAX_BYTES,
) -> Fetched:
    """The module at `url`; ModuleFetchError naming the URL and the reason when it cannot be had."""
    scheme = scheme_of(url)
    if scheme == "oci":
        pulled = await RegistryClient(session, parse_image(url), credentials, max_bytes).pull()
        return Fetched(pulled.module, pulled.pinned.url)
    if scheme == "file":
        module = await asyncio.to_thread(_read_file, url, max_bytes)
    else:
        resp = await downloads.get(session, url, max_bytes=max_bytes, what=f"module url {url}")
        if resp.status != 200:
            raise downloads.status_error(f"module url {url}", resp.status)
        module = resp.body
    if not module.startswith(WASM_MAGIC):
        raise ModuleFetchError(f"module url {url}: the content is not WebAssembly", "bad_layout")
    return Fetched(module, url)


def _read_file(url: str, max_bytes: int) -> bytes:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise ModuleFetchError(f"module url {url}: a file:// URL names no host", "bad_url")
    path = Path(unquote(parts.path))
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise ModuleFetchError(
                f"module url {url}: {size} bytes, more than the limit of {max_bytes}", "too_large"
            )
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ModuleFetchError(f"module url {url}: no such file", "not_found") from exc
    except OSError as exc:
        raise ModuleFetchError(f"module url {url}: {exc.strerror or exc}", "unreachable") from exc
