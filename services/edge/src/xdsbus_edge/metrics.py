"""A tiny Prometheus text-format registry (counters, gauges, histograms with labels), and the edge's
metrics, named after Istio's pilot-discovery so existing dashboards apply."""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xdsbus.nats_options import ConnectionState
    from xdsbus_edge.limits import StreamLimits


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: Sequence[str], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if float(value).is_integer():
        return str(int(value))
    return repr(float(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)

    def _check(self, labels: tuple[str, ...]) -> tuple[str, ...]:
        """Validate the labels of a new series (existing series are looked up as given)."""
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}")
        return tuple(str(v) for v in labels)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def samples(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labelnames)
        self._values: dict[tuple[str, ...], float] = {}
        if not self.labelnames:
            self._values[()] = 0.0

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        values = self._values
        if labels in values:
            values[labels] += amount
        else:
            values[self._check(labels)] = amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def samples(self) -> list[str]:
        return [
            f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in sorted(self._values.items())
        ]


class Gauge(Counter):
    kind = "gauge"

    def __init__(
        self,
        name: str,
        help_text: str,
        labelnames: Sequence[str] = (),
        function: Callable[[], dict[tuple[str, ...], float]] | None = None,
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.function = function

    def set(self, value: float, *labels: str) -> None:
        self._values[labels if labels in self._values else self._check(labels)] = value

    def dec(self, *labels: str, amount: float = 1.0) -> None:
        self.inc(*labels, amount=-amount)

    def samples(self) -> list[str]:
        if self.function is not None:
            self._values = dict(self.function())
        return super().samples()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self, name: str, help_text: str, buckets: Sequence[float], labelnames: Sequence[str] = ()
    ) -> None:
        super().__init__(name, help_text, labelnames)
        self.buckets = tuple(sorted(buckets))
        # Per label set: counts per bucket (non-cumulative, last = +Inf), sum.
        self._series: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}

    def observe(self, value: float, *labels: str) -> None:
        series = self._series.get(labels)
        if series is None:
            series = self._series[self._check(labels)] = ([0] * (len(self.buckets) + 1), [0.0])
        series[0][bisect.bisect_left(self.buckets, value)] += 1
        series[1][0] += value

    def count(self, *labels: str) -> int:
        series = self._series.get(labels)
        return sum(series[0]) if series else 0

    def samples(self) -> list[str]:
        lines = []
        for key, (counts, total) in sorted(self._series.items()):
            running = 0
            for bound, n in zip((*self.buckets, math.inf), counts, strict=True):
                running += n
                le = f'le="{_number(bound)}"'
                lines.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {running}")
            lines.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(total[0])}")
            lines.append(f"{self.name}_count{_labels(self.labelnames, key)} {running}")
        return lines


class Registry:
    def __init__(self) -> None:
        self._metrics: list[_Metric] = []

    def register(self, metric: _Metric) -> _Metric:
        self._metrics.append(metric)
        return metric

    def render(self) -> str:
        lines: list[str] = []
        for metric in self._metrics:
            lines.extend(metric.header())
            lines.extend(metric.samples())
        return "\n".join(lines) + "\n"


# Seconds: push and convergence times (Istio's buckets).
TIME_BUCKETS = (0.01, 0.1, 0.5, 1, 3, 5, 10, 20, 30)
# Bytes: "4M default limit for gRPC, 10M config will start to strain system, 40M is likely upper-bound".
SIZE_BUCKETS = (1, 10_000, 1_000_000, 4_000_000, 10_000_000, 40_000_000)


class EdgeMetrics:
    """Every metric the edge exports."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        self.pushes: Counter = r.register(  # type: ignore[assignment]
            Counter("pilot_xds_pushes", "Pilot build and send errors for lds, rds, cds and eds.", ["type"])
        )
        self.push_time: Histogram = r.register(  # type: ignore[assignment]
            Histogram(
                "pilot_xds_push_time",
                "Total time in seconds Pilot takes to push lds, rds, cds and eds.",
                TIME_BUCKETS,
                ["type"],
            )
        )
        self.convergence: Histogram = r.register(  # type: ignore[assignment]
            Histogram(
                "pilot_proxy_convergence_time",
                "Delay in seconds between config change and a proxy receiving all required configuration.",
                TIME_BUCKETS,
            )
        )
        self.rejects: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "pilot_total_xds_rejects",
                "Total number of XDS responses from pilot rejected by proxy.",
                ["type"],
            )
        )
        self.type_rejects: dict[str, Counter] = {}
        for short in ("cds", "eds", "lds", "rds"):
            self.type_rejects[short] = r.register(  # type: ignore[assignment]
                Counter(f"pilot_xds_{short}_reject", f"Pilot rejected {short.upper()} configs.")
            )
        self.connected: Gauge = r.register(  # type: ignore[assignment]
            Gauge("pilot_xds", "Number of endpoints connected to this pilot using XDS.", ["variant"])
        )
        self.config_size: Histogram = r.register(  # type: ignore[assignment]
            Histogram(
                "pilot_xds_config_size_bytes",
                "Distribution of configuration sizes pushed to clients",
                SIZE_BUCKETS,
                ["type"],
            )
        )
        self.expired_nonce: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "pilot_xds_expired_nonce", "Total number of XDS requests with an expired nonce.", ["type"]
            )
        )
        self.refused: Counter = r.register(  # type: ignore[assignment]
            Counter("xdsbus_edge_streams_refused", "Streams refused, by reason.", ["reason"])
        )
        self.xds_denied: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_xds_denied",
                "xDS streams refused by the access policy (docs/design.md §10), by reason.",
                ["reason"],
            )
        )
        self.snapshot_version: Gauge = r.register(  # type: ignore[assignment]
            Gauge("xdsbus_edge_snapshot_version", "Ledger version served, per scope.", ["scope"])
        )
        self.snapshot_resources: Gauge = r.register(  # type: ignore[assignment]
            Gauge("xdsbus_edge_snapshot_resources", "Resources in the served snapshot.", ["scope", "type"])
        )
        self.snapshot_bytes: Gauge = r.register(  # type: ignore[assignment]
            Gauge(
                "xdsbus_edge_snapshot_bytes",
                "Bytes of serialized resources in the served snapshot.",
                ["scope", "type"],
            )
        )
        self.versions_rejected: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_versions_not_served",
                "Ledger versions not served because a body could not be fetched or verified.",
                ["scope"],
            )
        )
        self.proxy_status_writes: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_proxy_status_writes",
                "Proxy status entries written to (put) or deleted from (delete) KV xdsbus_proxies.",
                ["op"],
            )
        )
        self.proxy_status_failures: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_proxy_status_failures",
                "Proxy status writes NATS refused or did not answer (tried again a second later).",
            )
        )
        self.bodies_missing: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_bodies_missing",
                "Bodies named by a ledger version that NATS does not hold (each logged with its sha256).",
                ["scope"],
            )
        )
        self.versions_sealed: Counter = r.register(  # type: ignore[assignment]
            Counter(
                "xdsbus_edge_versions_not_opened",
                "Ledger versions not served because the keyring cannot open a sealed Secret body.",
                ["scope"],
            )
        )

        # Zero samples for the label values every edge has, so dashboards see the series from the start.
        for short in ("cds", "eds", "lds", "ecds", "rds", "sds"):
            self.pushes.inc(short, amount=0)
            self.rejects.inc(short, amount=0)
            self.expired_nonce.inc(short, amount=0)
        for mode in ("sotw", "delta"):
            self.connected.set(0, mode)

    def watch_limits(self, limits: StreamLimits) -> None:
        """Export the edge's limits as they stand (limits.py): open streams and response bytes."""
        budget = limits.budget
        gauges: list[tuple[str, str, Callable[[], int]]] = [
            (
                "xdsbus_edge_streams_open",
                "xDS streams open (against --max-streams).",
                lambda: limits.gate.open,
            ),
            (
                "xdsbus_edge_response_bytes_in_flight",
                "Response bytes reserved by streams building or writing them (against --max-response-bytes).",
                lambda: budget.used,
            ),
            (
                "xdsbus_edge_response_bytes_in_flight_peak",
                "Highest xdsbus_edge_response_bytes_in_flight since start.",
                lambda: budget.peak,
            ),
            (
                "xdsbus_edge_response_streams_waiting",
                "Streams waiting for response bytes in flight to fall under --max-response-bytes.",
                lambda: budget.waiting,
            ),
        ]
        for name, help_text, read in gauges:
            self.registry.register(Gauge(name, help_text, function=_constant_labels(read)))

    def watch_connection(self, connection: ConnectionState, lags: Callable[[], dict[str, float]]) -> None:
        """Export the NATS connection (`Bus.connection`) under the names every service uses, and how
        long each scope's served version has been behind the ledger head."""
        gauges: list[tuple[str, str, Callable[[], float]]] = [
            (
                "xdsbus_nats_connected",
                "1 while the connection to NATS is up, else 0.",
                lambda: 1.0 if connection.connected else 0.0,
            ),
            (
                "xdsbus_nats_reconnects",
                "Reconnections to NATS since the process started.",
                lambda: connection.reconnects,
            ),
            (
                "xdsbus_nats_disconnected_seconds",
                "Seconds since the connection to NATS was lost; 0 while connected.",
                connection.disconnected_for,
            ),
        ]
        for name, help_text, read in gauges:
            self.registry.register(Gauge(name, help_text, function=_constant_labels(read)))
        self.registry.register(
            Gauge(
                "xdsbus_edge_ledger_lag_seconds",
                "Seconds the served version has been behind the scope's ledger head; 0 when serving it.",
                ["scope"],
                function=lambda: {(scope,): lag for scope, lag in lags().items()},
            )
        )

    def render(self) -> str:
        return self.registry.render()


def _constant_labels(read: Callable[[], float]) -> Callable[[], dict[tuple[str, ...], float]]:
    return lambda: {(): float(read())}
