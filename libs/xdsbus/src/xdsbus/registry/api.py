"""The contract between a registry client and the machinery that runs it.

A registry client (`watch-nacos`, `watch-consul`, `watch-eureka`) implements `Registry` for one
`spec.registries[]` entry of McpBridge. It reports what the registry holds through a `RegistrySink`; the
machinery in `xdsbus.registry` turns that into events, starts and stops clients as McpBridge changes,
and makes sure only one replica publishes.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Protocol

from xdsbus.model.mcpbridge import RegistryConfig
from xdsbus.model.registry import RegistryService


class RegistrySink(Protocol):
    """Where a registry client reports; each call returns once the events are stored in the log."""

    async def resync(self, services: Sequence[RegistryService]) -> None:
        """Everything the registry holds now: services not listed are removed."""

    async def upsert(self, service: RegistryService) -> None:
        """One service's current state (all its endpoints)."""

    async def delete(self, hostname: str) -> None:
        """A service the registry no longer has."""

    def answered(self) -> None:
        """The registry answered (a poll, a blocking query's return, a push), even with nothing new:
        the source lag of /metrics counts from the last answer, not from the last change."""

    def problem(self, what: str, reason: str) -> None:
        """Report garbage from the registry (a malformed instance, an unparsable payload) without
        stopping: `what` names the service or instance, `reason` says what is wrong. Shown in logs
        and in KV xdsbus_status under the registry's source."""


class Credentials(Protocol):
    """Looks up `authSecretName` keys (nacosUsername, nacosPassword, consulToken) in the system
    namespace's Secrets, as folded from the event log."""

    def get(self, secret_name: str, key: str) -> str | None:
        """The value, or None when the Secret or the key is missing."""


class Registry(abc.ABC):
    """A running watch of one registry."""

    def __init__(self, config: RegistryConfig, credentials: Credentials) -> None:
        self.config = config
        self.credentials = credentials

    @abc.abstractmethod
    async def run(self, sink: RegistrySink) -> None:
        """Connect, `resync` what the registry holds, then report changes until cancelled.

        Raise when the registry is unreachable or fails: the machinery keeps the last published state
        (a registry outage never removes endpoints), backs off, and calls `run` again, whose first
        `resync` then removes what vanished meanwhile."""
