"""The keyring (docs/design.md §4, §10): seal with the newest key, open with any; the additional data
binds source, kind, key and kid; the first format still opens; key files are 0600 from their first byte;
watchers put the key id in the envelope and in the rev."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

import msgspec
import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xdsbus.bus import Bus
from xdsbus.cli.main import main as xdsbus_main
from xdsbus.events import EVENTS_STREAM, decode
from xdsbus.fold.reading import last_event_seq
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.ledger import checkpoints
from xdsbus.secretbox import (
    KEY_ENV,
    KEY_FILE_ENV,
    SEALED_MARKER,
    SEALED_MARKER_V1,
    SecretBox,
    SecretKeyError,
    additional_data,
    create_key_file,
    is_sealed,
    key_id,
    read_key_file,
)
from xdsbus.watcher import Watcher, content_rev

OLD, NEW, OTHER = b"o" * 32, b"n" * 32, b"x" * 32
BODY: dict[str, Any] = {
    "kind": "Secret",
    "metadata": {"name": "tls", "namespace": "shop"},
    "data": {"a": "b"},
}
WHERE = {"source": "k8s/prod", "kind": "Secret", "key": "shop/tls"}
FIXTURE = Path(__file__).parent / "fixtures" / "checkpoint-v1.bin"
FIXTURE_KEY = b"xdsbus-checkpoint-fixture-key-32"  # tests/ledger/test_checkpoints.py


def _b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


def test_seals_with_the_first_key_and_opens_with_any() -> None:
    old_ring, rotated = SecretBox(OLD), SecretBox(NEW, OLD)
    assert rotated.kid == key_id(NEW) and rotated.kids == (key_id(NEW), key_id(OLD))
    sealed_old, sealed_new = old_ring.seal(BODY, **WHERE), rotated.seal(BODY, **WHERE)
    assert (sealed_old["kid"], sealed_new["kid"]) == (key_id(OLD), key_id(NEW))
    assert sealed_new["sealed"] == SEALED_MARKER and is_sealed(sealed_new)
    assert rotated.open(sealed_old, **WHERE) == BODY == rotated.open(sealed_new, **WHERE)
    # The old key dropped: what it sealed no longer opens, and the error names both sides.
    with pytest.raises(SecretKeyError, match=f"sealed with key {key_id(OLD)}.*{key_id(NEW)}"):
        SecretBox(NEW).open(sealed_old, **WHERE)
    with pytest.raises(SecretKeyError, match=key_id(NEW)):
        old_ring.open(sealed_new, **WHERE)
    with pytest.raises(SecretKeyError, match="failed authentication"):
        rotated.open({**sealed_new, "kid": key_id(OLD)}, **WHERE)  # relabelled with another kid of the ring


def test_key_id_is_a_short_stable_hash() -> None:
    # The first 12 hex digits of sha256(key): pinned, since event revs and envelopes carry it.
    assert key_id(OLD) == "b7bca7371b79" and key_id(OLD) != key_id(NEW)
    assert SecretBox(NEW, OLD, NEW).kids == (key_id(NEW), key_id(OLD))  # a key listed twice counts once


@pytest.mark.parametrize(
    "where",
    [
        {**WHERE, "source": "k8s/other"},
        {**WHERE, "kind": "ConfigMap"},
        {**WHERE, "key": "shop/other"},
    ],
)
def test_a_body_moved_to_another_object_does_not_open(where: dict[str, str]) -> None:
    box = SecretBox(NEW)
    sealed = box.seal(BODY, **WHERE)
    with pytest.raises(SecretKeyError, match="failed authentication"):
        box.open(sealed, **where)


def test_the_additional_data_is_the_msgpack_array_of_marker_source_kind_key_and_kid() -> None:
    kid = key_id(NEW)
    aad = additional_data(**WHERE, kid=kid)
    # fixarray of 5, then each string with its fixstr header (0xa0 | length).
    fields = [b"xdsbus-sealed-v2", b"k8s/prod", b"Secret", b"shop/tls", kid.encode()]
    assert aad == bytes([0x95]) + b"".join(bytes([0xA0 | len(f)]) + f for f in fields)
    # The exact bytes, as docs/architecture.md states them: a third party can open a body.
    sealed = msgspec.convert(SecretBox(NEW).seal(BODY, **WHERE), dict[str, Any])
    nonce, ct = base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["ct"])
    assert len(nonce) == 12
    assert msgspec.msgpack.decode(AESGCM(NEW).decrypt(nonce, ct, aad)) == BODY
    # Names are length-prefixed: shifting a separator between fields makes other additional data.
    assert additional_data(source="a", kind="b\0c", key="d", kid=kid) != additional_data(
        source="a\0b", kind="c", key="d", kid=kid
    )
    box = SecretBox(NEW)
    assert box.open(box.seal(BODY, **{**WHERE, "key": "a\0b"}), **{**WHERE, "key": "a\0b"}) == BODY


def test_bodies_sealed_in_the_first_format_still_open_with_any_key_of_the_ring() -> None:
    """The first format: additional data = the marker alone, opened wherever the body is found."""
    nonce = os.urandom(12)
    ct = AESGCM(OLD).encrypt(nonce, msgspec.msgpack.encode(BODY), SEALED_MARKER_V1.encode())
    legacy = msgspec.to_builtins({"sealed": SEALED_MARKER_V1, "kid": key_id(OLD), "nonce": nonce, "ct": ct})
    assert is_sealed(legacy)
    assert SecretBox(NEW, OLD).open(legacy, **WHERE) == BODY
    tampered = {**legacy, "ct": _b64(bytes([ct[0] ^ 1]) + ct[1:])}
    with pytest.raises(SecretKeyError, match="failed authentication"):
        SecretBox(NEW, OLD).open(tampered, **WHERE)


def test_the_committed_checkpoint_holds_a_first_format_secret_that_still_opens() -> None:
    state = checkpoints.decode(FIXTURE.read_bytes()).state
    sealed = state.objects["Secret"]["k8s"]["default/tls-a"].value()
    assert sealed["sealed"] == SEALED_MARKER_V1
    opened = SecretBox(NEW, FIXTURE_KEY).open(sealed, source="k8s", kind="Secret", key="default/tls-a")
    assert opened["metadata"] == {"name": "tls-a", "namespace": "default"}


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ({"kind": "Secret"}, "not sealed"),
        ({"sealed": "xdsbus-sealed-v9", "kid": "k", "nonce": "", "ct": ""}, "unknown format"),
    ],
)
def test_what_is_not_a_sealed_body_is_refused(body: dict[str, Any], reason: str) -> None:
    with pytest.raises(SecretKeyError, match=reason):
        SecretBox(NEW).open(body, **WHERE)


# -- where keys come from ---------------------------------------------------------------------------


def test_the_environment_holds_several_keys_newest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, f"{_b64(NEW)}, {_b64(OLD)}")
    assert SecretBox.from_env().kids == (key_id(NEW), key_id(OLD))
    monkeypatch.setenv(KEY_ENV, f"{_b64(NEW)},not base64!")
    with pytest.raises(SecretKeyError, match="key 2 is not base64"):
        SecretBox.from_env()
    monkeypatch.setenv(KEY_ENV, _b64(b"short"))
    with pytest.raises(SecretKeyError, match="32 bytes"):
        SecretBox.from_env()


def test_a_key_file_holds_one_key_a_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# newest first\n{_b64(NEW)}\n\n{_b64(OLD)}\n")
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.setenv(KEY_FILE_ENV, str(path))
    assert SecretBox.from_env().kids == (key_id(NEW), key_id(OLD))
    # A named file that is missing is an error, never created: that would be a key nothing else holds.
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(SecretKeyError, match="no such key file"):
        SecretBox.from_env()
    assert not (tmp_path / "missing").exists()


def test_the_local_key_file_is_created_once_with_mode_0600(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    monkeypatch.setattr(os, "umask", os.umask)  # restored below even if the test fails
    previous = os.umask(0)  # even with a permissive umask the file is private
    try:
        path = tmp_path / ".data" / "secret.key"
        first = SecretBox.from_env(default_key_file=path)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert SecretBox.from_env(default_key_file=path).kids == first.kids
        assert not create_key_file(path)
        assert sorted(p.name for p in path.parent.iterdir()) == ["secret.key"]  # no temporary file left
    finally:
        os.umask(previous)


# -- the command ------------------------------------------------------------------------------------


def test_rotation_with_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys"
    assert xdsbus_main(["keyring", "rotate", "--key-file", str(path)]) == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    (first,) = read_key_file(path)
    # Step 1: a new key every service can open with; the old one still seals.
    assert xdsbus_main(["keyring", "add", "--key-file", str(path)]) == 0
    old, new = read_key_file(path)
    assert old == first
    # Step 2: the new key seals.
    assert xdsbus_main(["keyring", "promote", key_id(new), "--key-file", str(path)]) == 0
    assert read_key_file(path) == [new, old]
    # The sealing key cannot be dropped; the old one can, once everything is re-sealed.
    assert xdsbus_main(["keyring", "drop", key_id(new), "--key-file", str(path)]) == 2
    assert "is the sealing key" in capsys.readouterr().err
    assert xdsbus_main(["keyring", "drop", key_id(old), "--key-file", str(path)]) == 0
    assert read_key_file(path) == [new]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    capsys.readouterr()
    assert xdsbus_main(["keyring", "list", "--key-file", str(path)]) == 0
    assert capsys.readouterr().out == f"{key_id(new)}  seals and opens\n"
    assert xdsbus_main(["keyring", "drop", "nope", "--key-file", str(path)]) == 2


# -- the watcher ------------------------------------------------------------------------------------


class _Publisher(Watcher):
    """A watcher driven by the test: only its publishing matters here."""

    async def watch(self) -> None:
        await self.stop.wait()


async def test_the_watcher_puts_the_key_id_in_the_envelope_and_the_rev(bus: Bus) -> None:
    """A restart with a new sealing key re-seals: a new rev and body, which the fold counts as a change,
    and which opens to the same object."""
    state = FoldState()
    changed: list[list[ObjectRef]] = []
    for box in (SecretBox(OLD), SecretBox(NEW, OLD)):
        watcher = _Publisher(bus, "k8s/prod", secret_box=box)
        assert await watcher.upsert("Secret", "shop/tls", BODY)
        assert await watcher.upsert("Service", "shop/web", {"kind": "Service"})
        seq = await last_event_seq(bus)
        secret, service = [
            decode((await bus.js.get_msg(EVENTS_STREAM, n)).data or b"") for n in (seq - 1, seq)
        ]
        assert secret.kid == box.kid and secret.rev == f"{content_rev(BODY)}@{box.kid}"
        assert secret.body["kid"] == box.kid
        assert (service.kid, service.rev) == ("", content_rev({"kind": "Service"}))
        changed.append(apply(state, seq - 1, secret))
        apply(state, seq, service)
    assert changed[1] == [ObjectRef("Secret", "k8s/prod", "shop/tls")]  # the re-seal is a change
    held = state.objects["Secret"]["k8s/prod"]["shop/tls"]
    assert held.rev.endswith("@" + key_id(NEW))
    assert SecretBox(NEW).open(held.value(), **WHERE) == BODY
