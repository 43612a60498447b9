"""Checkpoint formats (docs/design.md §4, §5: a versioned encoding that later code keeps reading).

Format 0 (headerless, the first form ever written) and format 1 both decode; the committed fixture
tests/fixtures/checkpoint-v1.bin pins format 1, so no later change can silently stop reading it. To
write it again (only ever for format 1):
XDSBUS_WRITE_CHECKPOINT_FIXTURE=1 pytest tests/ledger/test_checkpoints.py -k fixture
"""

from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tests.support.objects import endpoint_slice, ingress, service
from xdsbus.contract.resources import ResourceKey
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, apply
from xdsbus.ledger import checkpoints
from xdsbus.secretbox import SecretBox, is_sealed

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint-v1.bin"
FIXTURE_V0 = FIXTURE.with_name("checkpoint-v0.bin")
WRITE_FIXTURE_ENV = "XDSBUS_WRITE_CHECKPOINT_FIXTURE"
# The fixture's Secret is sealed under this key (a test key, in the clear on purpose).
FIXTURE_KEY = b"xdsbus-checkpoint-fixture-key-32"
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "tls-a", "namespace": "default"},
    "type": "kubernetes.io/tls",
    "data": {"tls.crt": "Y2VydA==", "tls.key": "a2V5"},
}
PUBLISHED = {
    ResourceKey("type.googleapis.com/envoy.config.cluster.v3.Cluster", "outbound|80||a"): "aa" * 32,
    ResourceKey("type.googleapis.com/envoy.config.cluster.v3.Cluster", "outbound|80||b"): "bb" * 32,
    ResourceKey("type.googleapis.com/envoy.config.route.v3.RouteConfiguration", "http.80"): "cc" * 32,
}


def _event(kind: str, key: str, body: Any = None, op: Op = Op.UPSERT, epoch: int = 0) -> Event:
    return Event(source="k8s", kind=kind, key=key, op=op, rev="1", epoch=epoch, at=1, body=body)


def fixture_state(box: SecretBox) -> FoldState:
    """A small state of every shape a checkpoint holds: Services, EndpointSlices, an Ingress, a sealed
    Secret, a deleted object, a resync epoch and a resync still gathering its parts."""
    events = [
        _event("Service", "", op=Op.SYNC_BEGIN, epoch=1),
        _event("Service", "default/a", service("a")),
        _event("Service", "default/b", service("b", ports=(80, 8080))),
        _event("Service", "default/gone", service("gone")),
        _event("EndpointSlice", "default/a-1", endpoint_slice("a", ["10.0.0.1", "10.0.0.2"])),
        _event("EndpointSlice", "default/b-1", endpoint_slice("b", ["10.0.1.1"])),
        _event("Ingress", "default/web", _unclassed(ingress("web", "a.example.com", "a"))),
        _event("Secret", "default/tls-a", box.seal(SECRET, source="k8s", kind="Secret", key="default/tls-a")),
        _event("Service", "default/gone", op=Op.DELETE),
        _event("Service", "", {"keys": ["default/a"], "part": 0, "parts": 2}, op=Op.SYNC_END, epoch=1),
    ]
    state = FoldState()
    for seq, event in enumerate(events, start=1):
        apply(state, seq, event)
    return state


def _unclassed(body: dict[str, Any]) -> dict[str, Any]:
    """The Ingress as checkpoint-v1.bin holds it: written before the shared fixtures named a class."""
    body["spec"].pop("ingressClassName", None)
    return body


def _opened(state: FoldState, box: SecretBox) -> dict[str, Any]:
    """The state's content, sealed bodies opened (a seal's nonce differs from one sealing to the next)."""
    plain = msgspec.to_builtins(state)
    for kind, by_source in plain["objects"].items():
        for source, by_key in by_source.items():
            for key, obj in by_key.items():
                # The folded state holds each body as its msgpack.
                obj[1] = msgspec.msgpack.decode(state.objects[kind][source][key].body)
                if is_sealed(obj[1]):
                    obj[1] = box.open(obj[1], source=source, kind=kind, key=key)
    return plain


async def _format1(state: FoldState, published: dict[ResourceKey, str]) -> bytes:
    snap = checkpoints.snapshot(
        scope="default",
        translator_version="test",
        state=state,
        ledger_version=7,
        ledger_stream_seq=3,
        published=published,
    )
    return await checkpoints.encode_snapshot(snap)


def test_format_0_as_first_written_still_decodes() -> None:
    box = SecretBox(FIXTURE_KEY)
    state = fixture_state(box)
    published = [(k.type_url, k.name, sha) for k, sha in sorted(PUBLISHED.items())]
    original = checkpoints.Checkpoint(
        scope="default",
        translator_version="test",
        state=state,
        ledger_version=7,
        ledger_stream_seq=3,
        published=published,
    )
    # Exactly how the builder wrote checkpoints before formats had numbers: the state's bodies as maps.
    data = checkpoints.encode(original)
    layout = msgspec.msgpack.decode(zlib.decompress(data))
    assert layout["state"]["objects"]["Service"]["k8s"]["default/a"][1]["kind"] == "Service"
    assert not data.startswith(checkpoints.MAGIC)
    assert checkpoints.decode(data) == original


async def test_format_1_round_trip() -> None:
    box = SecretBox(FIXTURE_KEY)
    state = fixture_state(box)
    data = await _format1(state, PUBLISHED)
    assert data[: len(checkpoints.MAGIC) + 1] == checkpoints.MAGIC + bytes([checkpoints.FORMAT])
    loaded = checkpoints.decode(data)
    assert loaded.state == state
    assert (loaded.scope, loaded.translator_version, loaded.ledger_version, loaded.ledger_stream_seq) == (
        "default",
        "test",
        7,
        3,
    )
    assert {ResourceKey(t, n): sha for t, n, sha in loaded.published} == PUBLISHED


async def test_format_1_spans_many_chunks() -> None:
    state = FoldState()
    count = checkpoints.CHUNK_ITEMS * 2 + 7
    for i in range(count):
        apply(state, i + 1, _event("Service", f"default/s{i}", service(f"s{i}")))
    published = {ResourceKey("t", f"r{i}"): f"{i:064x}" for i in range(count)}
    loaded = checkpoints.decode(await _format1(state, published))
    assert loaded.state == state
    assert {ResourceKey(t, n): sha for t, n, sha in loaded.published} == published


async def test_a_snapshot_is_not_changed_by_later_folds() -> None:
    """The builder folds on while a snapshot is encoded: what it saves is the state at the snapshot."""
    box = SecretBox(FIXTURE_KEY)
    state = fixture_state(box)
    before = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=FoldState)
    snap = checkpoints.snapshot(
        scope="default",
        translator_version="test",
        state=state,
        ledger_version=7,
        ledger_stream_seq=3,
        published=PUBLISHED,
    )
    seq = state.seq
    # An equal body under a new rev (set in place), a changed body, a delete, an add, a new epoch.
    apply(
        state,
        seq + 1,
        Event(source="k8s", kind="Service", key="default/a", op=Op.UPSERT, rev="2", body=service("a")),
    )
    apply(state, seq + 2, _event("EndpointSlice", "default/a-1", endpoint_slice("a", ["10.0.0.9"])))
    apply(state, seq + 3, _event("Ingress", "default/web", op=Op.DELETE))
    apply(state, seq + 4, _event("Service", "default/c", service("c")))
    apply(state, seq + 5, _event("Service", "", op=Op.SYNC_BEGIN, epoch=2))
    assert state != before
    loaded = checkpoints.decode(await checkpoints.encode_snapshot(snap))
    assert loaded.state == before


def test_a_newer_format_is_refused_not_misread() -> None:
    with pytest.raises(checkpoints.UnknownCheckpointFormat):
        checkpoints.decode(checkpoints.MAGIC + bytes([checkpoints.FORMAT + 1]) + zlib.compress(b"\x80"))


def test_the_format_0_fixture_written_by_older_code_decodes_to_its_state() -> None:
    """checkpoint-v0.bin was written by the code that held bodies as dicts (format 0, `fixture_state`):
    the folded state now holds them as msgpack bytes, and that checkpoint still loads to the same state."""
    data = FIXTURE_V0.read_bytes()
    assert not data.startswith(checkpoints.MAGIC)
    box = SecretBox(FIXTURE_KEY)
    loaded = checkpoints.decode(data)
    assert _opened(loaded.state, box) == _opened(fixture_state(box), box)
    assert loaded.state.count() == 6
    assert {ResourceKey(t, n): sha for t, n, sha in loaded.published} == PUBLISHED


async def test_the_format_1_fixture_decodes_to_its_state() -> None:
    box = SecretBox(FIXTURE_KEY)
    if os.environ.get(WRITE_FIXTURE_ENV):
        # The fixture pins format 1: writing it with any other format would make it pin nothing.
        assert checkpoints.FORMAT == 1, "checkpoint-v1.bin holds format 1; pin a new format in a new file"
        FIXTURE.write_bytes(await _format1(fixture_state(box), PUBLISHED))
    data = FIXTURE.read_bytes()
    assert data.startswith(checkpoints.MAGIC + b"\x01"), "checkpoint-v1.bin must stay format 1"
    loaded = checkpoints.decode(data)
    expected = fixture_state(box)
    assert _opened(loaded.state, box) == _opened(expected, box)
    assert loaded.state.count() == 6
    sealed = loaded.state.objects["Secret"]["k8s"]["default/tls-a"].value()
    assert box.open(sealed, source="k8s", kind="Secret", key="default/tls-a") == SECRET
    assert {ResourceKey(t, n): sha for t, n, sha in loaded.published} == PUBLISHED
    assert (loaded.scope, loaded.translator_version, loaded.ledger_version, loaded.ledger_stream_seq) == (
        "default",
        "test",
        7,
        3,
    )
