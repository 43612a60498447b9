"""The console's rollback (docs/console.md, docs/rollback.md): offered only when the console is started
with `--allow-rollback` and a file of operator tokens, and connected to NATS as the `operator` user
(docs/design.md §10: it may publish LedgerPin events only).

Each POST carries `Authorization: Bearer <token>`; the token names the operator, whose name goes into the
LedgerPin event (source `operator/console`) and from there into `xdsbus status` and the ledger. A browser
sends no such header by itself, so another site cannot make it post one."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from xdsbus.bus import Bus
from xdsbus.ledger import pin_requests

TOOL = "console"
# A token shorter than this is refused when the file is read: it could be guessed.
MIN_TOKEN_CHARS = 16
# Seconds a POST waits for the builder's verdict before answering 202 (published, no verdict yet).
VERDICT_WAIT = 10.0


class RollbackRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A rollback's JSON body; `version` 0 is no version."""

    version: int
    reason: str = ""


class OperatorTokens:
    """The operators allowed to roll back through the console, by token."""

    def __init__(self, names: dict[str, str]) -> None:
        # token -> operator name
        self._names = dict(names)

    @classmethod
    def read(cls, path: Path) -> OperatorTokens:
        """Read `NAME:TOKEN` lines (blank lines and `#` comments skipped); ValueError naming the problem."""
        names: dict[str, str] = {}
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, token = line.partition(":")
            if not sep or not name.strip() or len(token.strip()) < MIN_TOKEN_CHARS:
                raise ValueError(
                    f"{path}:{number}: expected NAME:TOKEN, a token of {MIN_TOKEN_CHARS}+ characters"
                )
            names[token.strip()] = name.strip()
        if not names:
            raise ValueError(f"{path} holds no operator token")
        return cls(names)

    def who(self, authorization: str) -> str | None:
        """The operator a `Bearer <token>` header names, or None. Every token is compared, in constant
        time, so the answer's timing says nothing about which one was close."""
        scheme, _, offered = authorization.partition(" ")
        if scheme.lower() != "bearer" or not offered:
            return None
        found = None
        for token, name in self._names.items():
            if hmac.compare_digest(token.encode(), offered.strip().encode()):
                found = name
        return found


class Rollback:
    """The routes that publish LedgerPin events."""

    def __init__(self, bus: Bus, tokens: OperatorTokens) -> None:
        self.bus = bus
        self.tokens = tokens

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/scopes/{scope}/rollback", self.rollback)
        app.router.add_post("/api/scopes/{scope}/unpin", self.unpin)

    def _operator(self, request: web.Request) -> str | None:
        return self.tokens.who(request.headers.get("Authorization", ""))

    async def rollback(self, request: web.Request) -> web.Response:
        """Pin the scope to the body's version, after checking it as the builder will."""
        by = self._operator(request)
        if by is None:
            return _unauthorized()
        scope = request.match_info["scope"]
        try:
            body = msgspec.json.decode(await request.read(), type=RollbackRequest)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return _json({"error": f'expected {{"version": N}}: {exc}'}, 400)
        try:
            await pin_requests.check_version(self.bus, scope, body.version)
        except pin_requests.PinRefused as exc:
            return _json({"error": str(exc)}, 409)
        return await self._publish(scope, body.version, by, body.reason)

    async def unpin(self, request: web.Request) -> web.Response:
        """Release the scope's pin."""
        by = self._operator(request)
        if by is None:
            return _unauthorized()
        scope = request.match_info["scope"]
        try:
            pin_requests.check_scope(scope)
        except pin_requests.PinRefused as exc:
            return _json({"error": str(exc)}, 409)
        return await self._publish(scope, 0, by, "")

    async def _publish(self, scope: str, version: int, by: str, reason: str) -> web.Response:
        try:
            seq = await pin_requests.publish(
                self.bus, scope, version=version, by=by, tool=TOOL, reason=reason
            )
        except TimeoutError:
            # NATS answers a publish it refuses with nothing: most likely the console runs as `reader`.
            return _json(
                {
                    "error": "the LedgerPin event was not acknowledged: "
                    "is the console connected as the operator user?"
                },
                503,
            )
        status = await pin_requests.verdict(self.bus, scope, seq, VERDICT_WAIT)
        out: dict[str, Any] = {"scope": scope, "event_seq": seq, "operator": by, "version": version}
        if status is None:
            return _json({**out, "status": None}, 202)
        return _json({**out, "status": msgspec.to_builtins(status)}, 200)


def _unauthorized() -> web.Response:
    response = _json({"error": "an operator token is required (Authorization: Bearer <token>)"}, 401)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _json(value: Any, status: int) -> web.Response:
    return web.Response(body=msgspec.json.encode(value), status=status, content_type="application/json")
