"""The streams open on this edge and what they report: the edge's StreamRegistry (interfaces.py).

Reports become the pilot_* metrics (metrics.py); the streams' own ACK/NACK state becomes
/debug/syncz.
"""

from __future__ import annotations

import logging
from typing import Any

from xdsbus_edge.interfaces import RegisteredStream
from xdsbus_edge.metrics import EdgeMetrics
from xdsbus_edge.snapshot import short_type

log = logging.getLogger(__name__)


class StreamTable:
    """Registered streams by id and by proxy, and the metrics of their reports."""

    def __init__(self, metrics: EdgeMetrics) -> None:
        self.metrics = metrics
        self._streams: dict[int, RegisteredStream] = {}
        self._by_node: dict[str, set[RegisteredStream]] = {}

    def register(self, stream: RegisteredStream) -> None:
        """Count and log a stream that was accepted."""
        self._streams[stream.id] = stream
        self._by_node.setdefault(stream.node_id, set()).add(stream)
        self.metrics.connected.inc(stream.mode)
        log.info(
            "proxy %s connected (%s, scope %s, %s)",
            stream.node_id,
            stream.rpc,
            stream.scope,
            stream.peer,
            extra={"proxy": stream.node_id, "scope": stream.scope, "stream": stream.id},
        )

    def unregister(self, stream: RegisteredStream) -> None:
        """Forget a stream that ended."""
        if self._streams.pop(stream.id, None) is None:
            return
        peers = self._by_node.get(stream.node_id)
        if peers is not None:
            peers.discard(stream)
            if not peers:
                del self._by_node[stream.node_id]
        self.metrics.connected.dec(stream.mode)
        log.info("proxy %s disconnected (%s)", stream.node_id, stream.rpc, extra={"stream": stream.id})

    def streams_of(self, node_id: str) -> list[RegisteredStream]:
        """The streams of one proxy."""
        return list(self._by_node.get(node_id, ()))

    def streams(self) -> list[RegisteredStream]:
        """Every registered stream."""
        return list(self._streams.values())

    def refused(self, stream: RegisteredStream, reason: str) -> None:
        """Count a refusal (xdsbus_edge_streams_refused)."""
        self.metrics.refused.inc(reason)

    def responded(self, stream: RegisteredStream, type_url: str, size: int, seconds: float) -> None:
        """Count a response, its build-and-send time and its size."""
        short = short_type(type_url)
        self.metrics.pushes.inc(short)
        self.metrics.push_time.observe(seconds, short)
        self.metrics.config_size.observe(size, short)

    def nacked(self, stream: RegisteredStream, type_url: str, version: str, error: str) -> None:
        """Count a NACK (pilot_total_xds_rejects and the per-type counter)."""
        short = short_type(type_url)
        self.metrics.rejects.inc(short)
        per_type = self.metrics.type_rejects.get(short)
        if per_type is not None:
            per_type.inc()

    def expired_nonce(self, stream: RegisteredStream, type_url: str) -> None:
        """Count a SotW request ignored for its stale nonce."""
        self.metrics.expired_nonce.inc(short_type(type_url))

    def converged(self, stream: RegisteredStream, seconds: float) -> None:
        """Observe the time from a snapshot's load to the proxy's ACK of every type pushed."""
        self.metrics.convergence.observe(seconds)

    def syncz(self) -> list[dict[str, Any]]:
        """Per connected stream (proxy) and type: version sent, acked, nacked, last error."""
        return [s.debug() for s in sorted(self._streams.values(), key=lambda s: (s.node_id, s.id))]
