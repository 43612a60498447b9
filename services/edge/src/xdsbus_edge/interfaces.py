"""What the xDS protocol code (stream.py, sotw.py, delta.py) needs from the rest of the edge.

Three small interfaces, after go-control-plane's ConfigWatcher and Callbacks: the protocol code
imports these and nothing concrete, so every rule of docs/xds-protocol.md can be tested against an
in-memory source and registry (tests/edge/harness.py) without NATS or gRPC.

- `SnapshotSource`: the current snapshot of each scope, waiting for a first one, and wake-ups when a
  newer one is current. The edge's is `SnapshotCache` (cache.py), fed by the ledger followers.
- `StreamRegistry`: the streams open on this edge (a proxy's per-type streams find each other through
  it) and what they report: responses, NACKs, stale nonces, refusals, convergence. The edge's is
  `StreamTable` (registry.py), which turns the reports into metrics and /debug/syncz.
- `Transport`: the RPC as the stream sees it: who is at the other end, send bytes, end with a status.
  The edge's is the gRPC servicer context (server.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

import grpc

from xdsbus_edge.snapshot import Snapshot


class ScopeRefused(Exception):
    """A scope this edge does not serve to anyone (not allowed, or too many followed): raised by
    `SnapshotSource.first_snapshot`, it ends the stream with `code`."""

    def __init__(self, code: grpc.StatusCode, details: str, reason: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.reason = reason


class SnapshotSource(Protocol):
    """Complete snapshots per scope; never a partial one."""

    def current(self, scope: str) -> Snapshot | None:
        """The snapshot served now for `scope`, or None before the first one."""
        ...

    async def first_snapshot(self, scope: str) -> Snapshot | None:
        """The scope's snapshot for a new stream, waiting as long as the source allows for a scope it
        has yet to load; None: nothing complete to serve (the stream is refused with UNAVAILABLE).
        Raises ScopeRefused for a scope it will not serve."""
        ...

    def watch(self, scope: str, wake: Callable[[], None]) -> None:
        """Call `wake` (no arguments, synchronously) whenever a newer snapshot of `scope` is current."""
        ...

    def unwatch(self, scope: str, wake: Callable[[], None]) -> None:
        """Stop calling `wake`."""
        ...


class RegisteredStream(Protocol):
    """A stream as the registry and a proxy's other streams see it (stream.py's RegisteredStream fits)."""

    @property
    def id(self) -> int: ...
    @property
    def node_id(self) -> str: ...
    @property
    def scope(self) -> str: ...
    @property
    def rpc(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def mode(self) -> str: ...
    @property
    def watches(self) -> Mapping[str, object]:
        """The types this stream serves, by type URL."""
        ...

    def cds_sent_elsewhere(self, eds_names: set[str]) -> None:
        """Clusters went out on another stream of the same proxy; `eds_names` are their EDS names."""
        ...

    def debug(self) -> dict[str, Any]:
        """The stream's state for /debug/syncz."""
        ...


class StreamRegistry(Protocol):
    """The open streams and the reports they make."""

    def register(self, stream: RegisteredStream) -> None:
        """A stream was accepted (it has a node, a scope and a snapshot)."""
        ...

    def unregister(self, stream: RegisteredStream) -> None:
        """A registered stream ended."""
        ...

    def streams_of(self, node_id: str) -> Iterable[RegisteredStream]:
        """The registered streams of one proxy."""
        ...

    def refused(self, stream: RegisteredStream, reason: str) -> None:
        """A stream was ended with an error status (`reason` is a short label: `not_ready`, ...)."""
        ...

    def responded(self, stream: RegisteredStream, type_url: str, size: int, seconds: float) -> None:
        """A response of `size` bytes was sent, `seconds` after its building started."""
        ...

    def nacked(self, stream: RegisteredStream, type_url: str, version: str, error: str) -> None:
        """The proxy rejected `version` of a type (the stream keeps the error for /debug/syncz)."""
        ...

    def expired_nonce(self, stream: RegisteredStream, type_url: str) -> None:
        """A SotW request with a stale nonce was ignored."""
        ...

    def converged(self, stream: RegisteredStream, seconds: float) -> None:
        """The proxy acknowledged every type of a push, `seconds` after its snapshot was loaded."""
        ...


class Transport(Protocol):
    """One RPC, as a stream uses it; grpc.aio.ServicerContext fits."""

    def peer(self) -> str:
        """The address of the other end."""
        ...

    async def write(self, message: bytes) -> None:
        """Send one serialized response."""
        ...

    async def abort(self, code: grpc.StatusCode, details: str = "") -> NoReturn:
        """End the RPC with an error status (raises)."""
        ...
