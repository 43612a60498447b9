"""xdsbus.header_parsing against the parser it replaces: for any header block, the dict nats-py's own
`Client._parse_header_lines` gives, whether the names were seen before or not."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from nats.aio.client import Client

from tests.fuzz.budget import fuzz_settings
from xdsbus.header_parsing import parse_header_lines

pytestmark = pytest.mark.fuzz

# Pieces a header line is made of, the awkward ones included: bytes.strip's white space and the
# \x1c-\x1f that only str.isspace counts, colons, lone CR and LF, non-ASCII bytes (valid and not UTF-8).
ASCII_PIECES = [
    b"Nats-Stream",
    b"Nats-Sequence",
    b"Nats-Msg-Id",
    b"a",
    b"b",
    b"1",
    b":",
    b": ",
    b" ",
    b"\t",
    b"\x0b",
    b"\x0c",
    b"\x1c",
    b"\x1f",
    b"\r",
    b"\n",
    b"\r\n",
    b"\x00",
    b"\x7f",
]
OTHER_PIECES = [b"\x85", b"\xa0", b"\xc3\xa9", b"\xe2\x80\x83", b"\xff", b"\xc3"]


def _blocks(pieces: list[bytes]) -> st.SearchStrategy[bytes]:
    lines = st.lists(st.sampled_from(pieces), max_size=8).map(b"".join)
    return st.lists(lines, max_size=8).map(b"\r\n".join)


# Blocks of ASCII only (all a NATS server and our publishers send), then any bytes.
BLOCKS = _blocks(ASCII_PIECES) | _blocks(ASCII_PIECES + OTHER_PIECES) | st.binary(max_size=40)


@given(BLOCKS)
@example(b"Nats-Stream: KV_x\r\nNats-Subject: $KV.x.k\r\nNats-Sequence: 7\r\n\r\n")
@example(b": empty name\r\nno colon\r\n\r\n \tspaced \x0b: v \r\nin side: v\r\n\x1cName: v\r\nn\xc3\xa9: v")
@example(b"a: 1\r\na: 2\r\nb:\xff\xfe value \xc3\r\n")
@example(b"a:\x1c v \x1f\r\n\x1fb: 1\r\nc\x0b: \x0c2\t\r\n")
@fuzz_settings(quick=400)
def test_headers_parse_as_nats_py_parses_them(block: bytes) -> None:
    expected = Client._parse_header_lines(block)
    # Twice: the second time the names come from what the first remembered.
    assert parse_header_lines(block) == expected
    assert parse_header_lines(block) == expected
    # A block of other text but the same names, both ways (ASCII text and bytes).
    assert parse_header_lines(block + b"\r\nx: \xc3\xa9") == Client._parse_header_lines(
        block + b"\r\nx: \xc3\xa9"
    )
