"""A faster parser for the header block of every message a NATS connection receives.

nats-py 2.16 parses each received message's headers (`Name: Value` lines) in
`Client._parse_header_lines`, in pure Python with a generator per line to refuse names holding white
space. The edge receives ~5 headers on each of the tens of thousands of direct-get replies of a cold
load (issue 16), where that parser was a sixth of its CPU; every service pays it on each JetStream
delivery. `parse_header_lines` gives the same dict for every input, faster: names are checked once and
remembered, and a block of ASCII bytes (all a NATS server and our publishers send) is decoded once and
split as text. `install` puts it on a connection, only on nats-py's own `Client` of the release it was
checked against (the pin in libs/xdsbus/pyproject.toml); anything else keeps its own parser.
"""

from __future__ import annotations

from typing import Any

import nats.aio.client
from nats.aio.client import Client

# The release whose parser `parse_header_lines` reproduces (tests/test_header_parsing.py compares them).
_CHECKED_RELEASE = "2.16."
# What `bytes.strip()` strips; `str.strip()` would also strip \x1c-\x1f and non-ASCII spaces.
_ASCII_WHITESPACE = " \t\n\r\x0b\x0c"
# Header names seen (a few per stream: Nats-Stream, Nats-Subject, ...) and the key each gives; names
# that give no key are not kept, so a stranger's names cannot grow these past _NAMES_KEPT.
_TEXT_NAMES: dict[str, str] = {}
_BYTE_NAMES: dict[bytes, str] = {}
_NAMES_KEPT = 256


def parse_header_lines(raw: bytes) -> dict[str, str]:
    """The headers in `raw` (the block after the `NATS/1.0` line) exactly as nats-py 2.16's
    `Client._parse_header_lines` gives them: lines split at CRLF, those without `:` skipped, names
    stripped and skipped unless ASCII without white space, values stripped and decoded as UTF-8 with
    replacement characters; a repeated name keeps its last value."""
    if not raw.isascii():
        return _parse_bytes(raw)
    out: dict[str, str] = {}
    names = _TEXT_NAMES
    # ASCII decodes to the same characters as the UTF-8 nats-py uses, so the text splits and strips
    # as the bytes would.
    for line in raw.decode("ascii").split("\r\n"):
        name, colon, value = line.partition(":")
        if not colon:
            continue
        key = names.get(name)
        if key is None:
            key = name.strip(_ASCII_WHITESPACE)
            if _has_whitespace(key):
                continue
            if len(names) < _NAMES_KEPT:
                names[name] = key
        out[key] = value.strip(_ASCII_WHITESPACE)
    return out


def _parse_bytes(raw: bytes) -> dict[str, str]:
    """`parse_header_lines` for a block holding non-ASCII bytes: values are decoded one by one, and a
    name that is not ASCII is skipped."""
    out: dict[str, str] = {}
    names = _BYTE_NAMES
    for line in raw.split(b"\r\n"):
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        key = names.get(name)
        if key is None:
            try:
                key = name.strip().decode("ascii")
            except UnicodeDecodeError:
                continue
            if _has_whitespace(key):
                continue
            if len(names) < _NAMES_KEPT:
                names[name] = key
        out[key] = value.strip().decode("utf-8", "replace")
    return out


def _has_whitespace(key: str) -> bool:
    # str.isspace, as nats-py checks: it also counts \x1c-\x1f, which strip() leaves.
    return any(c.isspace() for c in key)


def usable(nc: Any) -> bool:
    """Whether `install` would put `parse_header_lines` on `nc`: nats-py's own Client of the checked
    release, whose parser is still the static method nats-py defines."""
    parser = Client.__dict__.get("_parse_header_lines")
    return (
        type(nc) is Client
        and nats.aio.client.__version__.startswith(_CHECKED_RELEASE)
        and isinstance(parser, staticmethod)
        and getattr(parser.__func__, "__module__", None) == "nats.aio.client"
    )


def install(nc: Any) -> bool:
    """Make `nc` parse received headers with `parse_header_lines` when `usable(nc)`; whether it did."""
    if not usable(nc):
        return False
    # nats-py calls it as self._parse_header_lines(raw): a plain function on the instance is not bound.
    nc._parse_header_lines = parse_header_lines
    return True
