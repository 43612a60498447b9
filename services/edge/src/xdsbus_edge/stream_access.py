"""Admitting an xDS stream: who the proxy is (certificate SAN or bearer token) and whether the scope and
Gateway its node metadata asks for are granted to it (docs/design.md §10).

The check runs on the first request of every stream, before the stream sees it: a refused stream ends
with UNAUTHENTICATED (no identity, or an unknown token) or PERMISSION_DENIED (an identity the policy does
not name, or a scope or Gateway not granted), is logged with the identity and what it asked for, and is
counted in `xdsbus_edge_xds_denied{reason}`. Without a policy every proxy the transport accepted is
admitted: with a client CA that is every holder of a certificate the CA signed.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
from envoy.config.core.v3 import base_pb2
from google.protobuf.message import DecodeError

from xdsbus_edge.access_policy import AccessPolicy, Rule
from xdsbus_edge.scopes import scope_of

log = logging.getLogger(__name__)

GATEWAY_METADATA_KEY = "XDSBUS_GATEWAY"
# gRPC auth-context properties that carry the client certificate's SANs.
_SAN_PROPERTIES = ("x509_subject_alternative_name", "peer_uri", "peer_dns")
_BEARER = "bearer "


@dataclass(frozen=True)
class Caller:
    """What the connection says about the proxy. The token is never logged."""

    sans: tuple[str, ...] = ()
    token: str | None = None

    @property
    def anonymous(self) -> bool:
        return not self.sans and self.token is None


@dataclass(frozen=True)
class Denial:
    code: grpc.StatusCode
    reason: str
    details: str


def caller_of(context: Any) -> Caller:
    """The SANs of the peer's verified certificate and the bearer token of the call, if any."""
    sans: dict[str, None] = {}
    auth = context.auth_context() or {}
    for prop in _SAN_PROPERTIES:
        for value in auth.get(prop, ()):
            sans[value.decode() if isinstance(value, bytes) else str(value)] = None
    token = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str) and value[: len(_BEARER)].lower() == _BEARER:
            token = value[len(_BEARER) :].strip()
    return Caller(sans=tuple(sans), token=token)


def gateway_of(node: base_pb2.Node) -> str:
    """The Gateway (`namespace/name`) a proxy asks for in XDSBUS_GATEWAY, or ""."""
    value = node.metadata.fields.get(GATEWAY_METADATA_KEY) if node.HasField("metadata") else None
    if value is None or value.WhichOneof("kind") != "string_value":
        return ""
    return value.string_value


class StreamAccess:
    """Admits or refuses each stream by the policy (None: admit every stream the transport accepted)."""

    def __init__(self, policy: AccessPolicy | None, on_denied: Callable[[str], None]) -> None:
        self.policy = policy
        self.on_denied = on_denied

    def identify(self, caller: Caller) -> tuple[str, list[Rule], Denial | None]:
        """Who the caller is: how logs name it, the policy rules that name it, or why it is refused
        before it asks for anything (no identity, an unknown token, an identity no rule names)."""
        policy = self.policy
        named = ",".join(caller.sans) or "anonymous"
        if policy is None:
            return named, [], None
        rules = [rule for _, rule in policy.for_sans(caller.sans)]
        if caller.token is not None:
            by_token = policy.for_token(caller.token)
            if by_token is None:
                return (
                    "unknown bearer token",
                    [],
                    Denial(grpc.StatusCode.UNAUTHENTICATED, "bad_token", "the bearer token is not known"),
                )
            rules.append(by_token)
        if not rules:
            if caller.anonymous:
                return (
                    named,
                    [],
                    Denial(
                        grpc.StatusCode.UNAUTHENTICATED,
                        "no_identity",
                        "no identity: present a client certificate or a bearer token",
                    ),
                )
            return (
                named,
                [],
                Denial(
                    grpc.StatusCode.PERMISSION_DENIED, "unknown_identity", f"identity {named} is not allowed"
                ),
            )
        return ",".join(dict.fromkeys(rule.label for rule in rules)), rules, None

    def decide(self, caller: Caller, scope: str, gateway: str) -> tuple[str, Denial | None]:
        """(how logs name the caller, None if it may read `scope` and `gateway` or why not)."""
        who, rules, denial = self.identify(caller)
        if denial is not None or self.policy is None:
            return who, denial
        if not any(rule.grant.allows_scope(scope) for rule in rules):
            return who, Denial(
                grpc.StatusCode.PERMISSION_DENIED, "scope", f"{who} may not read scope {scope!r}"
            )
        if gateway and not any(
            rule.grant.allows_scope(scope) and rule.grant.allows_gateway(gateway) for rule in rules
        ):
            return who, Denial(
                grpc.StatusCode.PERMISSION_DENIED, "gateway", f"{who} may not read Gateway {gateway!r}"
            )
        return who, None

    async def admit(
        self,
        requests: AsyncIterator[Any],
        context: Any,
        rpc: str,
        parse: Callable[[bytes], Any] = lambda data: data,
    ) -> AsyncIterator[Any]:
        """The stream's requests if it is admitted (the first one read here, parsed with `parse` when it
        came as bytes, then handed on); otherwise aborts the RPC with the refusal's status. A caller
        refused for who it is is refused at once, before it sends anything: a stranger holds no stream
        open."""
        caller = caller_of(context)
        who, _, denial = self.identify(caller)
        if denial is not None:
            await self._deny(context, rpc, who, denial, "", "", "")
        iterator = requests.__aiter__()
        try:
            first = await iterator.__anext__()
        except StopAsyncIteration:
            return _empty()
        if isinstance(first, bytes):
            try:
                first = parse(first)
            except DecodeError:
                return _chain(first, iterator)  # the stream refuses it (INVALID_ARGUMENT)
        if first.HasField("node") and first.node.id:
            # A request without a node is the stream's to refuse (INVALID_ARGUMENT); scope checks need one.
            scope, gateway = scope_of(first.node), gateway_of(first.node)
            who, denial = self.decide(caller, scope, gateway)
            if denial is not None:
                await self._deny(context, rpc, who, denial, first.node.id, scope, gateway)
        return _chain(first, iterator)

    async def _deny(
        self, context: Any, rpc: str, who: str, denial: Denial, proxy: str, scope: str, gateway: str
    ) -> NoReturn:
        self.on_denied(denial.reason)
        asked = f" asked for scope {scope!r}" if proxy else ""
        log.warning(
            "denied %s stream of proxy %s from %s: identity %s%s%s: %s",
            rpc,
            proxy or "(not yet named)",
            context.peer(),
            who,
            asked,
            f" Gateway {gateway!r}" if gateway else "",
            denial.reason,
            extra={"proxy": proxy, "scope": scope, "identity": who, "reason": denial.reason},
        )
        await context.abort(denial.code, denial.details)
        raise AssertionError("context.abort returned")


async def _chain(first: Any, rest: AsyncIterator[Any]) -> AsyncIterator[Any]:
    yield first
    async for item in rest:
        yield item


async def _empty() -> AsyncIterator[Any]:
    return
    yield
