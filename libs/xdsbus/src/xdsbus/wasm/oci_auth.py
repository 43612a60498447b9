"""Registry authentication as the OCI distribution and docker token specifications describe it: a 401
answer names a scheme in `WWW-Authenticate`; for `Bearer` the client asks the named realm for a token
(with its credentials, if any, as HTTP Basic) and retries with `Authorization: Bearer <token>`; for
`Basic` it retries with the credentials themselves."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from urllib.parse import urlencode

import aiohttp

from xdsbus.wasm import downloads
from xdsbus.wasm.credentials import Credentials
from xdsbus.wasm.errors import ModuleFetchError

_PARAM = re.compile(r'([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))')


@dataclass(frozen=True)
class Challenge:
    """One `WWW-Authenticate` challenge: its scheme (lower case) and parameters."""

    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """The challenge of a `WWW-Authenticate` header (`Bearer realm="...",service="...",scope="..."`)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params = {
        m.group(1).lower(): m.group(2) if m.group(2) is not None else m.group(3)
        for m in _PARAM.finditer(rest)
    }
    return Challenge(scheme.lower(), params)


def basic(creds: Credentials) -> str:
    """An `Authorization` value for HTTP Basic."""
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


async def authorization(
    session: aiohttp.ClientSession,
    challenge: Challenge,
    creds: Credentials | None,
    scope: str,
    what: str,
) -> str:
    """The `Authorization` header value that answers `challenge` for `scope` (`repository:<name>:pull`)."""
    if challenge.scheme == "basic":
        if creds is None:
            raise ModuleFetchError(
                f"{what}: the registry asks for credentials and none are configured", "unauthorized"
            )
        return basic(creds)
    if challenge.scheme != "bearer":
        raise ModuleFetchError(
            f"{what}: unsupported authentication scheme {challenge.scheme!r}", "unauthorized"
        )
    realm = challenge.params.get("realm", "")
    if not realm.startswith(("https://", "http://")):
        raise ModuleFetchError(f"{what}: bearer challenge without a usable realm ({realm!r})", "unauthorized")
    query = {"scope": challenge.params.get("scope") or scope}
    if "service" in challenge.params:
        query["service"] = challenge.params["service"]
    separator = "&" if "?" in realm else "?"
    headers = {"Authorization": basic(creds)} if creds is not None else {}
    resp = await downloads.get(
        session,
        f"{realm}{separator}{urlencode(sorted(query.items()))}",
        headers=headers,
        max_bytes=1024 * 1024,
        what=f"{what}: token from {realm}",
    )
    if resp.status != 200:
        raise ModuleFetchError(
            f"{what}: the token endpoint {realm} answered HTTP {resp.status}"
            + ("" if creds is not None else " (no credentials configured for this registry)"),
            "unauthorized",
        )
    try:
        doc = json.loads(resp.body)
    except ValueError as exc:
        raise ModuleFetchError(
            f"{what}: the token endpoint {realm} answered no JSON", "unauthorized"
        ) from exc
    token = (doc.get("token") or doc.get("access_token")) if isinstance(doc, dict) else None
    if not isinstance(token, str) or not token:
        raise ModuleFetchError(f"{what}: the token endpoint {realm} answered no token", "unauthorized")
    return f"Bearer {token}"
