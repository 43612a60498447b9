"""The proxy-wasm modules the tests use, built from their source in tests/support/wasm/ with wasmtime's
`wat2wasm` (PyPI `wasmtime`), never checked in as binaries."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import wasmtime

SOURCES = Path(__file__).parent / "wasm"


@functools.cache
def build(name: str) -> bytes:
    """The module compiled from `tests/support/wasm/<name>.wat`."""
    return bytes(wasmtime.wat2wasm((SOURCES / f"{name}.wat").read_text()))


def add_header_module() -> bytes:
    """A filter that adds the response header its configuration names: `{"header": h, "value": v}`."""
    return build("add_header")


def sha256_hex(data: bytes) -> str:
    """Hex sha256, as modules are named."""
    return hashlib.sha256(data).hexdigest()
