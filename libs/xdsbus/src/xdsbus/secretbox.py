"""AES-GCM sealing of Secret bodies, so private keys never rest in the event log in plain text."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_MARKER = "xdsbus-sealed-v1"
KEY_ENV = "XDSBUS_SECRET_KEY"
KEY_FILE_ENV = "XDSBUS_SECRET_KEY_FILE"
# Where the local stack keeps its key when neither variable is set: one file every service shares.
LOCAL_KEY_FILE = Path(".data/secret.key")


class SecretKeyError(RuntimeError):
    """No usable key, or a body sealed under another key."""


class Sealed(msgspec.Struct, kw_only=True):
    """What a Secret event carries instead of the object."""

    sealed: str
    kid: str
    nonce: bytes
    ct: bytes


class SecretBox:
    """Seals and opens Secret bodies with one AES-256-GCM key."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise SecretKeyError(f"the secret key must be 32 bytes (got {len(key)})")
        self._aead = AESGCM(key)
        self.kid = hashlib.sha256(key).hexdigest()[:12]

    @classmethod
    def from_env(cls, default_key_file: Path | None = None) -> SecretBox:
        """Key from XDSBUS_SECRET_KEY (base64), else XDSBUS_SECRET_KEY_FILE, else `default_key_file`,
        created with a fresh random key when it does not exist (the local stack's case)."""
        if value := os.environ.get(KEY_ENV):
            return cls(_decode_key(value, KEY_ENV))
        path_text = os.environ.get(KEY_FILE_ENV)
        path = Path(path_text) if path_text else default_key_file
        if path is None:
            raise SecretKeyError(f"set {KEY_ENV} (base64 of 32 bytes) or {KEY_FILE_ENV}")
        if not path.exists() and not path_text:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(base64.b64encode(os.urandom(32)).decode() + "\n")
            path.chmod(0o600)
        return cls(_decode_key(path.read_text().strip(), str(path)))

    def seal(self, body: Any) -> dict[str, Any]:
        """Encrypt a Secret object; the result goes in the event body."""
        nonce = os.urandom(12)
        plain = msgspec.msgpack.encode(body)
        ct = self._aead.encrypt(nonce, plain, SEALED_MARKER.encode())
        return msgspec.to_builtins(Sealed(sealed=SEALED_MARKER, kid=self.kid, nonce=nonce, ct=ct))

    def open(self, body: Any) -> Any:
        """Decrypt a sealed body; raises SecretKeyError when it is not ours or was tampered with."""
        try:
            sealed = msgspec.convert(body, Sealed, from_attributes=False)
        except msgspec.ValidationError as exc:
            raise SecretKeyError(f"Secret body is not sealed: {exc}") from exc
        if sealed.kid != self.kid:
            raise SecretKeyError(f"Secret sealed with key {sealed.kid}, this process holds {self.kid}")
        try:
            plain = self._aead.decrypt(sealed.nonce, sealed.ct, SEALED_MARKER.encode())
        except InvalidTag as exc:
            raise SecretKeyError("Secret body failed authentication") from exc
        return msgspec.msgpack.decode(plain)


def is_sealed(body: Any) -> bool:
    """Whether an event body is a sealed Secret."""
    return isinstance(body, dict) and body.get("sealed") == SEALED_MARKER


def _decode_key(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise SecretKeyError(f"{where}: not base64") from exc
