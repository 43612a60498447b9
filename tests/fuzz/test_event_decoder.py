"""The event decoder and the fold against whatever a publisher with stream access could write: random
bytes, random msgpack, envelopes with random fields. `decode` returns an Event or raises MalformedEvent;
`fold.apply` on decoded events raises nothing but MalformedEvent, and the state it builds can still be
checkpointed (docs/design.md §4). Anything else would stop the builder on every restart."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fuzz.budget import fuzz_settings
from xdsbus.events import BodyRef, Event, MalformedEvent, Op, decode, with_stored_body
from xdsbus.fold.state import FoldState, apply

pytestmark = pytest.mark.fuzz

INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
scalars = (
    st.none()
    | st.booleans()
    | INT64
    | st.floats()
    | st.text(max_size=20)
    | st.binary(max_size=20)
    | st.just([])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, min_size=1, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
# Values near what sources publish, so that decoding gets past the envelope's checks often.
SOURCES = st.sampled_from(["k8s/default", "file/x", "nacos/a", "nosource", ""]) | st.text(max_size=12)
KINDS = st.sampled_from(["Ingress", "Secret", "Service", ""]) | st.text(max_size=8)
KEYS = st.sampled_from(["default/a", "default/b", "a", ""]) | st.text(max_size=8)
sync_end_bodies = st.fixed_dictionaries(
    {},
    optional={
        "keys": st.lists(KEYS, max_size=4) | values,
        "part": INT64 | values,
        "parts": INT64 | values,
    },
)
envelopes = st.fixed_dictionaries(
    {"v": st.just(1) | INT64, "source": SOURCES, "kind": KINDS, "op": st.sampled_from([o.value for o in Op])},
    optional={
        "key": KEYS | values,
        "rev": st.text(max_size=8) | values,
        "epoch": INT64 | values,
        "at": INT64,
        "body": values | sync_end_bodies,
        "body_ref": st.fixed_dictionaries({"sha256": st.text(max_size=8), "size": INT64}) | values,
        "term": st.integers(min_value=0, max_value=5) | INT64,
        "kid": st.text(max_size=8),
        "extra": values,
    },
)


CLAIMED = Event(source="k8s/x", kind="Secret", key="a/b", op=Op.UPSERT, body_ref=BodyRef(sha256="0", size=1))


def decoded_or_none(data: bytes) -> Event | None:
    try:
        return decode(data)
    except MalformedEvent:
        return None


@fuzz_settings()
@given(st.binary(max_size=512))
def test_random_bytes_decode_or_are_malformed(data: bytes) -> None:
    decoded_or_none(data)
    # The same bytes as a claim-checked body read back from the object store.
    try:
        with_stored_body(CLAIMED, data)
    except MalformedEvent:
        pass


@fuzz_settings()
@given(values | envelopes)
def test_random_msgpack_decodes_or_is_malformed(value: Any) -> None:
    event = decoded_or_none(msgspec.msgpack.encode(value))
    if event is not None:
        # Encodings, not events, are compared: a NaN in a body is not equal to itself.
        data = msgspec.msgpack.encode(event)
        assert msgspec.msgpack.encode(decode(data)) == data


def test_deep_nesting_is_malformed_not_a_crash() -> None:
    """A body nested deeper than the interpreter's recursion limit (found by the fuzzer above)."""
    nested = b"\x91" * 100_000 + b"\xc0"
    envelope = msgspec.msgpack.encode({"v": 1, "source": "k8s/x", "kind": "K", "key": "k", "op": "upsert"})
    assert envelope[0] == 0x85  # a map of five entries; one more: the body
    with pytest.raises(MalformedEvent):
        decode(b"\x86" + envelope[1:] + b"\xa4body" + nested)
    event = decode(
        msgspec.msgpack.encode({"v": 1, "source": "k8s/x", "kind": "K", "key": "k", "op": "delete"})
    )
    with pytest.raises(MalformedEvent):
        with_stored_body(event, nested)


@fuzz_settings()
@given(st.lists(envelopes, max_size=30))
def test_the_fold_takes_any_decoded_events(batch: list[dict[str, Any]]) -> None:
    state = FoldState()
    for seq, value in enumerate(batch, start=1):
        event = decoded_or_none(msgspec.msgpack.encode(value))
        if event is None:
            continue
        try:
            apply(state, seq, event)
        except MalformedEvent:
            continue
    # What the builder checkpoints must encode and read back as it was.
    data = msgspec.msgpack.encode(state)
    assert msgspec.msgpack.decode(data, type=FoldState) == state
