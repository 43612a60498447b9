"""The keyring that seals Secret bodies with AES-256-GCM, so private keys never rest in the event log in
plain text (docs/design.md §4, §10).

A keyring is a list of 32-byte keys, newest first: the first key seals, any key opens. A key's id (`kid`)
is the first 12 hex digits of its sha256. A body sealed now binds, as AES-GCM additional data, the object
it belongs to (source, kind, key) and the key id, so a sealed body copied to another object fails to
open. Bodies sealed in the first format (additional data: the marker alone) still open, so every event
ever written stays readable. docs/architecture.md ("Secrets") spells out the exact bytes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# What bodies are sealed with now: the additional data binds source, kind, key and kid.
SEALED_MARKER = "xdsbus-sealed-v2"
# The first format, still opened: the additional data is this marker alone.
SEALED_MARKER_V1 = "xdsbus-sealed-v1"
KEY_ENV = "XDSBUS_SECRET_KEY"
KEY_FILE_ENV = "XDSBUS_SECRET_KEY_FILE"
# Where the local stack keeps its keyring when neither variable is set: one file every service shares.
LOCAL_KEY_FILE = Path(".data/secret.key")
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretKeyError(RuntimeError):
    """No usable key, or a body this keyring cannot open."""


class Sealed(msgspec.Struct, kw_only=True):
    """What a Secret event carries instead of the object."""

    sealed: str
    kid: str
    nonce: bytes
    ct: bytes


def key_id(key: bytes) -> str:
    """The id of a key: the first 12 hex digits of its sha256 (stable, and reveals nothing of the key)."""
    return hashlib.sha256(key).hexdigest()[:12]


def additional_data(*, source: str, kind: str, key: str, kid: str) -> bytes:
    """The AES-GCM additional data of the current format: the msgpack array [marker, source, kind, key,
    kid]. Each string carries its length, so no name, whatever it holds, can be read as another."""
    return msgspec.msgpack.encode([SEALED_MARKER, source, kind, key, kid])


class SecretBox:
    """A keyring: seals with the first (newest) key, opens with any of them."""

    def __init__(self, *keys: bytes) -> None:
        if not keys:
            raise SecretKeyError("a keyring needs at least one key")
        self._aeads: dict[str, AESGCM] = {}
        for key in keys:
            if len(key) != KEY_BYTES:
                raise SecretKeyError(f"a secret key must be {KEY_BYTES} bytes (got {len(key)})")
            self._aeads.setdefault(key_id(key), AESGCM(key))
        self.kids: tuple[str, ...] = tuple(self._aeads)
        # The sealing key's id.
        self.kid = self.kids[0]

    @classmethod
    def from_env(cls, default_key_file: Path | None = None) -> SecretBox:
        """The keyring of XDSBUS_SECRET_KEY (base64 keys separated by commas, newest first), else of the
        file XDSBUS_SECRET_KEY_FILE names, else of `default_key_file`, which is created with one fresh
        key when it does not exist (the local stack's case)."""
        if value := os.environ.get(KEY_ENV):
            return cls(*decode_keys(value.split(","), KEY_ENV))
        path_text = os.environ.get(KEY_FILE_ENV)
        path = Path(path_text) if path_text else default_key_file
        if path is None:
            raise SecretKeyError(f"set {KEY_ENV} (base64 of 32 bytes) or {KEY_FILE_ENV}")
        if not path_text:
            create_key_file(path)
        return cls(*read_key_file(path))

    def describe(self) -> str:
        """The key ids, for logs: which one seals, which ones open."""
        return f"seals with {self.kid}, opens {', '.join(self.kids)}"

    def seal(self, body: Any, *, source: str, kind: str, key: str) -> dict[str, Any]:
        """Encrypt the object `kind` `key` of `source` with the newest key; the result is the event body."""
        nonce = os.urandom(NONCE_BYTES)
        aad = additional_data(source=source, kind=kind, key=key, kid=self.kid)
        ct = self._aeads[self.kid].encrypt(nonce, msgspec.msgpack.encode(body), aad)
        return msgspec.to_builtins(Sealed(sealed=SEALED_MARKER, kid=self.kid, nonce=nonce, ct=ct))

    def open(self, body: Any, *, source: str, kind: str, key: str) -> Any:
        """Decrypt the sealed body of the object `kind` `key` of `source`; raises SecretKeyError when no
        key of the ring sealed it, or it was tampered with or sealed for another object."""
        try:
            sealed = msgspec.convert(body, Sealed, from_attributes=False)
        except msgspec.ValidationError as exc:
            raise SecretKeyError(f"Secret body is not sealed: {exc}") from exc
        if sealed.sealed == SEALED_MARKER:
            aad = additional_data(source=source, kind=kind, key=key, kid=sealed.kid)
        elif sealed.sealed == SEALED_MARKER_V1:
            aad = SEALED_MARKER_V1.encode()
        else:
            raise SecretKeyError(f"Secret body is sealed in an unknown format {sealed.sealed!r}")
        aead = self._aeads.get(sealed.kid)
        if aead is None:
            raise SecretKeyError(
                f"Secret sealed with key {sealed.kid}, which the keyring ({', '.join(self.kids)}) lacks"
            )
        try:
            plain = aead.decrypt(sealed.nonce, sealed.ct, aad)
        except InvalidTag as exc:
            raise SecretKeyError(
                "Secret body failed authentication (altered, or sealed for another object)"
            ) from exc
        return msgspec.msgpack.decode(plain)


def is_sealed(body: Any) -> bool:
    """Whether an event body is a sealed Secret (either format)."""
    return isinstance(body, dict) and body.get("sealed") in (SEALED_MARKER, SEALED_MARKER_V1)


def decode_keys(texts: Iterable[str], where: str) -> list[bytes]:
    """Base64 keys, blank entries and `#` comments skipped; at least one."""
    keys: list[bytes] = []
    for number, text in enumerate(texts, 1):
        text = text.strip()
        if not text or text.startswith("#"):
            continue
        try:
            keys.append(base64.b64decode(text, validate=True))
        except ValueError as exc:
            raise SecretKeyError(f"{where}: key {number} is not base64") from exc
    if not keys:
        raise SecretKeyError(f"{where}: no key")
    return keys


def read_key_file(path: Path) -> list[bytes]:
    """The keys of a key file, one base64 key a line, newest first."""
    try:
        text = path.read_text()
    except FileNotFoundError as exc:
        raise SecretKeyError(f"{path}: no such key file") from exc
    return decode_keys(text.splitlines(), str(path))


def new_key() -> bytes:
    """A fresh random key."""
    return os.urandom(KEY_BYTES)


def key_file_text(keys: Iterable[bytes]) -> str:
    """A key file's content: one base64 key a line, newest first."""
    return "".join(base64.b64encode(key).decode() + "\n" for key in keys)


def write_key_file(path: Path, keys: Iterable[bytes]) -> None:
    """Replace a key file at once with these keys; it is mode 0600 from its first byte."""
    _write_private(path, key_file_text(keys), replace=True)


def create_key_file(path: Path) -> bool:
    """Create a key file holding one fresh key unless it exists (two services starting together end up
    with the same file); whether this call created it."""
    if path.exists():
        return False
    try:
        _write_private(path, key_file_text([new_key()]), replace=False)
    except FileExistsError:
        return False
    return True


def _write_private(path: Path, text: str, *, replace: bool) -> None:
    # mkstemp creates the file with mode 0600, so the key is never readable by others, not even briefly;
    # it then takes the final name in one step (rename, or link when it must not replace a file).
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
