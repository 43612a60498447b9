"""Health and metrics of the builder and the watchers (docs/design.md §9): one small HTTP port,
`--http-listen`, serving `/metrics` (Prometheus text), `/ready` (the process can do its job: connected to
NATS, the layout there, nothing blocking it; a standby that could lead is ready) and `/live` (the event
loop answers: the page is served by that loop).

The figures live in one registry per process, `REGISTRY`: a watcher is made deep inside a registry
service's supervisor, and its counters must reach the page without being handed down. The pages show
figures only, never a body or a key, so the port may listen on every interface (the kubelet probes the
pod's address).

A deliberately tiny HTTP/1.1 server on asyncio streams: GET and HEAD only, one request per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import errno
import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence

from xdsbus.bus import Bus

log = logging.getLogger(__name__)

# Seconds a request may take to arrive: a probe sends it at once.
_REQUEST_TIMEOUT = 5.0
_MAX_HEADER_BYTES = 16 * 1024
_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 503: "Unavailable"}

# Each service's --http-listen port when none is given: distinct, so that one of each can run on one host
# (the local stack); the edge's is 15014.
DEFAULT_PORTS = {
    "xdsbus-builder": 15030,
    "xdsbus-watch-file": 15031,
    "xdsbus-watch-k8s": 15032,
    "xdsbus-watch-nacos": 15033,
    "xdsbus-watch-consul": 15034,
    "xdsbus-watch-eureka": 15035,
    "xdsbus-console": 15036,
}
DISABLED = "off"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


Series = dict[tuple[str, ...], float]


class Metric:
    """A counter or a gauge with labels; a gauge given `read` takes its series from it at each scrape."""

    def __init__(
        self,
        kind: str,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        read: Callable[[], Series] | None = None,
    ) -> None:
        self.kind = kind
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.read = read
        self._values: Series = {} if self.labelnames or read else {(): 0.0}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        """Add `amount` to the series of `labels`."""
        self._values[self._key(labels)] = self._values.get(labels, 0.0) + amount

    def set(self, value: float, *labels: str) -> None:
        """Set the series of `labels` (gauges)."""
        self._values[self._key(labels)] = value

    def value(self, *labels: str) -> float:
        """The current value of a series, 0 when it has none."""
        values = self.read() if self.read is not None else self._values
        return values.get(labels, 0.0)

    def _key(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        return labels

    def render(self) -> list[str]:
        """The metric's lines in the Prometheus text format."""
        values = self.read() if self.read is not None else self._values
        lines = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]
        for labels, value in sorted(values.items()):
            pairs = ",".join(f'{n}="{_escape(v)}"' for n, v in zip(self.labelnames, labels, strict=True))
            lines.append(
                f"{self.name}{{{pairs}}} {_number(value)}" if pairs else f"{self.name} {_number(value)}"
            )
        return lines


class Registry:
    """The metrics of one process, by name: registering a name again returns the metric already there,
    with a gauge's `read` replaced by the newest (tests run several services in one process; a service
    process registers each once)."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def counter(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> Metric:
        """A counter (monotonic)."""
        return self._add(Metric("counter", name, help_text, labelnames))

    def gauge(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        read: Callable[[], Series] | None = None,
    ) -> Metric:
        """A gauge, set by its owner or read at each scrape from `read`."""
        metric = self._add(Metric("gauge", name, help_text, labelnames, read))
        if read is not None:
            metric.read = read
        return metric

    def _add(self, metric: Metric) -> Metric:
        return self._metrics.setdefault(metric.name, metric)

    def render(self) -> str:
        """Every metric in the Prometheus text format."""
        lines: list[str] = []
        for metric in self._metrics.values():
            lines.extend(metric.render())
        return "\n".join(lines) + "\n"


REGISTRY = Registry()

# A readiness check: None when fine, else why the process cannot do its job.
Check = Callable[[], str | None]


class Health:
    """What `/ready` checks in one process: NATS (connected, the layout there once `bus` is set) and
    the checks the service adds."""

    def __init__(self, registry: Registry = REGISTRY) -> None:
        self.registry = registry
        self.bus: Bus | None = None
        self._checks: list[Check] = [self._nats]
        registry.gauge(
            "xdsbus_nats_connected", "1 while the connection to NATS is up, else 0.", read=self._connected
        )
        registry.gauge(
            "xdsbus_nats_reconnects",
            "Reconnections to NATS since the process connected first.",
            read=lambda: self._figure(lambda bus: bus.connection.reconnects),
        )
        registry.gauge(
            "xdsbus_nats_disconnected_seconds",
            "Seconds since the connection to NATS was lost; 0 while connected.",
            read=lambda: self._figure(lambda bus: bus.connection.disconnected_for()),
        )

    def add_check(self, check: Check) -> None:
        """Add a readiness check."""
        self._checks.append(check)

    def not_ready(self) -> list[str]:
        """Why the process is not ready; empty when it is."""
        return [reason for check in self._checks if (reason := check()) is not None]

    def _nats(self) -> str | None:
        if self.bus is None:
            return "connecting to NATS, or waiting for the layout (`xdsbus layout --apply`)"
        if not self.bus.nc.is_connected:
            link = self.bus.connection
            reason = f"NATS connection lost {link.disconnected_for():.0f}s ago"
            return f"{reason}: {link.last_error}" if link.last_error else reason
        return None

    def _connected(self) -> Series:
        return {(): 1.0 if self.bus is not None and self.bus.nc.is_connected else 0.0}

    def _figure(self, read: Callable[[Bus], float]) -> Series:
        return {} if self.bus is None else {(): float(read(self.bus))}


@dataclasses.dataclass(frozen=True, slots=True)
class Listen:
    """Where the health port listens; `explicit` when an operator chose it (a busy default port is then
    no reason to fail: several services share a development host)."""

    host: str
    port: int
    explicit: bool = True

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def listen_address(value: str) -> Listen | None:
    """`HOST:PORT` (`[V6]:PORT`, `:PORT` for every interface), or `off`: None."""
    if value == DISABLED:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or {DISABLED!r}, got {value!r}")
    return Listen(host.strip("[]") or "0.0.0.0", int(port))


def default_listen(prog: str) -> Listen | None:
    """The --http-listen of `prog` when none is given: every interface, its own port (off for a service
    without one)."""
    port = DEFAULT_PORTS.get(prog)
    return None if port is None else Listen("0.0.0.0", port, explicit=False)


Response = tuple[int, str, bytes]
_TEXT = "text/plain; charset=utf-8"


class HealthServer:
    """The HTTP port of `/metrics`, `/ready` and `/live` over a `Health`."""

    def __init__(self, health: Health) -> None:
        self.health = health
        self._server: asyncio.Server | None = None
        self.port = 0

    async def start(self, listen: Listen | None) -> bool:
        """Listen (None: stay off); False when a default port is taken (logged), which is not an error.
        An address the operator chose that cannot be bound raises OSError."""
        if listen is None:
            return False
        try:
            self._server = await asyncio.start_server(self._serve, listen.host, listen.port)
        except OSError as exc:
            if listen.explicit or exc.errno != errno.EADDRINUSE:
                raise
            log.warning("health port %s is in use: no /metrics, /ready, /live (set --http-listen)", listen)
            return False
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("/metrics, /ready and /live on %s:%d", listen.host, self.port)
        return True

    async def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    def page(self, path: str) -> Response:
        """The response for `path`."""
        path = path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/metrics":
            return 200, "text/plain; version=0.0.4; charset=utf-8", self.health.registry.render().encode()
        if path == "/ready":
            reasons = self.health.not_ready()
            if reasons:
                return 503, _TEXT, ("not ready: " + "; ".join(reasons) + "\n").encode()
            return 200, _TEXT, b"ready\n"
        if path == "/live":
            return 200, _TEXT, b"live\n"
        if path == "/":
            return 200, _TEXT, b"/live\n/metrics\n/ready\n"
        return 404, _TEXT, b"not found\n"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
            parts = head[:_MAX_HEADER_BYTES].split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            if len(parts) != 3:
                response: Response = 400, _TEXT, b"bad request\n"
            elif parts[0] not in ("GET", "HEAD"):
                response = 405, _TEXT, b"method not allowed\n"
            else:
                response = self.page(parts[1])
            status, content_type, body = response
            writer.write(
                (
                    f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                ).encode()
                + (b"" if parts[0] == "HEAD" else body)
            )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except Exception:
            log.exception("health request failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@contextlib.asynccontextmanager
async def serving(health: Health, listen: Listen | None) -> AsyncIterator[HealthServer]:
    """Serve `health` on `listen` for the duration of the block."""
    server = HealthServer(health)
    await server.start(listen)
    try:
        yield server
    finally:
        await server.stop()
