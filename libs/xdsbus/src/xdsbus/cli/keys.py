"""The keyring of the CLI's read commands: the builder's, from the environment or the local stack's key
file, and never a fresh key (one nobody sealed with opens nothing)."""

from __future__ import annotations

from xdsbus.secretbox import KEY_ENV, KEY_FILE_ENV, LOCAL_KEY_FILE, SecretBox, SecretKeyError


def keyring_or_none() -> SecretBox | None:
    """XDSBUS_SECRET_KEY, XDSBUS_SECRET_KEY_FILE or .data/secret.key when it exists; None without."""
    try:
        local = LOCAL_KEY_FILE if LOCAL_KEY_FILE.exists() else None
        return SecretBox.from_env(default_key_file=local)
    except SecretKeyError:
        return None


def reveal_keyring() -> SecretBox:
    """The keyring `--reveal-secrets` opens bodies with; a ValueError (exit status 2) without one."""
    box = keyring_or_none()
    if box is None:
        raise ValueError(
            f"--reveal-secrets needs the keyring that sealed the Secrets: set {KEY_ENV} or {KEY_FILE_ENV}"
        )
    return box
