"""Registry credentials from a docker config (`config.json`, or the `.dockerconfigjson` of a Kubernetes
`kubernetes.io/dockerconfigjson` Secret, which is what a WasmPlugin's `imagePullSecret` names)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xdsbus.wasm.errors import ModuleFetchError

# Docker Hub's credentials are filed under its v1 index URL.
_DOCKER_HUB_KEYS = ("https://index.docker.io/v1/", "index.docker.io", "docker.io", "registry-1.docker.io")


@dataclass(frozen=True)
class Credentials:
    """A user name and password (or identity token) for one registry."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password=<redacted>)"


class DockerConfig:
    """The `auths` of a docker config, looked up by registry host."""

    def __init__(self, auths: Mapping[str, Credentials]) -> None:
        self._auths = dict(auths)

    @classmethod
    def parse(cls, data: bytes | str, what: str = "docker config") -> DockerConfig:
        """Parse a docker config (`{"auths": {...}}`; the older bare map is accepted too)."""
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ModuleFetchError(f"{what} is not JSON: {exc}", "unauthorized") from exc
        if not isinstance(doc, dict):
            raise ModuleFetchError(f"{what} is not a JSON object", "unauthorized")
        auths = doc.get("auths", doc)
        if not isinstance(auths, dict):
            raise ModuleFetchError(f"{what}: auths is not an object", "unauthorized")
        found: dict[str, Credentials] = {}
        for server, entry in auths.items():
            creds = _entry_credentials(entry)
            if creds is not None:
                found[_host_of(server)] = creds
        return cls(found)

    def for_registry(self, registry: str) -> Credentials | None:
        """The credentials filed for `registry` (host[:port]), or None."""
        host = _host_of(registry)
        creds = self._auths.get(host)
        if creds is None and host in _DOCKER_HUB_KEYS:
            creds = next((self._auths[k] for k in map(_host_of, _DOCKER_HUB_KEYS) if k in self._auths), None)
        return creds

    def __bool__(self) -> bool:
        return bool(self._auths)


def _host_of(server: str) -> str:
    """`https://host:port/v1/` and `host:port` alike become `host:port`, lower case."""
    text = server.strip().lower()
    text = text.split("://", 1)[-1]
    return text.split("/", 1)[0]


def _entry_credentials(entry: Any) -> Credentials | None:
    if not isinstance(entry, dict):
        return None
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            user, sep, secret = base64.b64decode(auth, validate=False).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return None
        if sep:
            return Credentials(user, secret)
    username, password = entry.get("username"), entry.get("password")
    if isinstance(username, str) and isinstance(password, str) and username:
        return Credentials(username, password)
    return None
