"""What one edge gives its clients at most (issue 13 point 5, docs/design.md §10): no client, or storm of
clients, can take the edge's memory or its ledger connection.

- `EdgeLimits`: the configured bounds (xdsbus-edge flags, services/edge/README.md).
- `StreamGate`: the number of streams open at once; one more is refused with RESOURCE_EXHAUSTED.
- `ByteBudget`: the response bytes being built and written across all streams. A stream reserves what
  its next responses may take before it builds them and gives it back once they are written (gRPC's
  write returns when HTTP/2 flow control took the bytes), so a thousand proxies reconnecting at once
  are served a few at a time instead of each holding its own copy of the CDS response.
- `WriteDeadlines`: how long one response may take to be written (`--write-timeout`): the writes in
  flight and one timer for the edge, not a timer per write.
- `server_options`: the gRPC server's share: request size and maximum connection age.
- `add_limit_flags`, `limits_from_args`: the xdsbus-edge flags.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import dataclasses

from xdsbus.service_flags import ServiceParser
from xdsbus_edge.scopes import SCOPE_PATTERN

MIB = 1024 * 1024


@dataclasses.dataclass(frozen=True)
class EdgeLimits:
    """Bounds of one edge; every default is safe for a public listener."""

    # Streams open at once (every RPC, SotW or delta, ADS or per type).
    max_streams: int = 10_000
    # Requests read from one stream and not yet handled: a proxy sends one per response it gets, so a
    # stream that has more waiting floods the edge and is ended with RESOURCE_EXHAUSTED.
    max_queued_requests: int = 100
    # Largest request gRPC accepts (20k EDS names are about 1 MB).
    max_request_bytes: int = 4 * MIB
    # Scopes a proxy may name; empty: any name, but at most `max_scopes` followed at once.
    allowed_scopes: tuple[str, ...] = ()
    max_scopes: int = 64
    # A scope no stream has watched for this long stops being followed (its consumer is deleted);
    # scopes named at start are never released.
    scope_idle_timeout: float = 300.0
    # Connections older than this are told to go away (GOAWAY), so proxies spread onto new replicas;
    # streams still open after the grace are ended. 0: no maximum.
    max_connection_age: float = 1800.0
    max_connection_age_grace: float = 300.0
    # Response bytes being built and written across all streams at once.
    max_response_bytes: int = 16 * MIB
    # Seconds one response may take to be taken by the proxy (HTTP/2 flow control); a stream whose
    # proxy reads slower is ended, so it cannot hold its share of `max_response_bytes`. 0: no limit.
    write_timeout: float = 60.0


class StreamGate:
    """Counts open streams against a maximum."""

    def __init__(self, maximum: int) -> None:
        self.maximum = maximum
        self.open = 0

    def enter(self) -> bool:
        """Count one more stream; False (nothing counted) when the maximum is reached."""
        if self.open >= self.maximum:
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1


class ByteBudget:
    """A byte-counting semaphore, first come first served: a large reservation is not overtaken forever
    by small ones. A reservation larger than the capacity is cut to it (it then runs alone)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self.used = 0
        self.peak = 0
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = collections.deque()
        # Set while nothing is reserved (drained()).
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    async def acquire(self, size: int) -> int:
        """Wait until `size` bytes (at most the capacity) fit; the bytes reserved."""
        size = min(max(size, 0), self.capacity)
        if not self._waiters and self.used + size <= self.capacity:
            self._take(size)
            return size
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (size, future)
        self._waiters.append(entry)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release(size)
            else:
                self._waiters.remove(entry)
                self._wake()
            raise
        return size

    def release(self, size: int) -> None:
        self.used -= size
        self._wake()
        if not self.used:
            self._idle.set()

    async def drained(self) -> None:
        """Return once nothing is reserved: no response is being built or written."""
        await self._idle.wait()

    def reserve(self, size: int) -> Reservation:
        """Hold `size` bytes of the budget for an `async with` block (nothing when `size` is 0)."""
        return Reservation(self, size)

    def _take(self, size: int) -> None:
        self.used += size
        if self.used:
            self._idle.clear()
        self.peak = max(self.peak, self.used)

    def _wake(self) -> None:
        while self._waiters and self.used + self._waiters[0][0] <= self.capacity:
            size, future = self._waiters.popleft()
            if not future.done():
                self._take(size)
                future.set_result(None)


class Reservation:
    """`async with budget.reserve(size)`: a plain object rather than an async generator, whose set-up
    (the event loop's asyncgen hooks, a weak reference per generator) cost more than the reservation,
    taken by every stream for every push and request."""

    __slots__ = ("_budget", "_size", "_taken")

    def __init__(self, budget: ByteBudget, size: int) -> None:
        self._budget = budget
        self._size = size
        self._taken = 0

    async def __aenter__(self) -> None:
        if self._size > 0:
            self._taken = await self._budget.acquire(self._size)

    async def __aexit__(self, *exc_info: object) -> None:
        if self._taken:
            self._budget.release(self._taken)
            self._taken = 0


class WriteDeadlines:
    """The tasks writing a response, and when each started; a sweep every quarter of the timeout (at
    most a second) cancels those past it, so a write is ended between `timeout` and `timeout` plus
    that interval after it began. A timer per write (asyncio.timeout) costs more than the write itself
    at a thousand streams per push."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._writing: dict[asyncio.Task[object], float] = {}
        self._expired: set[asyncio.Task[object]] = set()
        self._sweep: asyncio.TimerHandle | None = None

    def enter(self) -> asyncio.Task[object] | None:
        """The current task starts a write; None when writes have no deadline."""
        if self.timeout <= 0:
            return None
        task = asyncio.current_task()
        if task is None:
            return None
        loop = asyncio.get_running_loop()
        self._writing[task] = loop.time()
        if self._sweep is None:
            self._sweep = loop.call_later(min(self.timeout / 4, 1.0), self._sweep_now)
        return task

    def expired(self, task: asyncio.Task[object] | None) -> bool:
        """Whether the task's write was cancelled for its deadline."""
        return task in self._expired

    def leave(self, task: asyncio.Task[object] | None) -> None:
        """The write ended; a task cancelled for its deadline goes on (to end its stream)."""
        if task is None:
            return
        self._writing.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            task.uncancel()

    def _sweep_now(self) -> None:
        self._sweep = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        for task, started in list(self._writing.items()):
            if now - started >= self.timeout and task not in self._expired:
                self._expired.add(task)
                task.cancel()
        if self._writing:
            self._sweep = loop.call_later(min(self.timeout / 4, 1.0), self._sweep_now)


@dataclasses.dataclass
class StreamLimits:
    """What the streams of one edge share: the bounds, the open-stream count, the byte budget, the
    deadlines of writes."""

    limits: EdgeLimits = dataclasses.field(default_factory=EdgeLimits)
    gate: StreamGate = dataclasses.field(init=False)
    budget: ByteBudget = dataclasses.field(init=False)
    writes: WriteDeadlines = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.gate = StreamGate(self.limits.max_streams)
        self.budget = ByteBudget(self.limits.max_response_bytes)
        self.writes = WriteDeadlines(self.limits.write_timeout)


def server_options(limits: EdgeLimits) -> list[tuple[str, int]]:
    """The gRPC server options that enforce `limits`: request size and connection age."""
    options = [("grpc.max_receive_message_length", limits.max_request_bytes)]
    if limits.max_connection_age > 0:
        options += [
            ("grpc.max_connection_age_ms", int(limits.max_connection_age * 1000)),
            ("grpc.max_connection_age_grace_ms", int(limits.max_connection_age_grace * 1000)),
        ]
    return options


_UNITS = {"": 1, "b": 1, "kib": 1024, "mib": MIB, "gib": 1024 * MIB}


def parse_bytes(value: str) -> int:
    """`4194304`, `4MiB`, `512KiB`, `1GiB` -> bytes (at least 1)."""
    text = value.strip()
    digits = text.rstrip("KMGiBkmgb")
    unit = text[len(digits) :].lower()
    if unit not in _UNITS or not digits.strip().isdigit() or int(digits) * _UNITS[unit] < 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 4194304 or 4MiB, got {value!r}")
    return int(digits) * _UNITS[unit]


def _count(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value!r}")
    return number


def _seconds(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected seconds (0 or more), got {value!r}")
    return number


def _scope_names(value: str) -> tuple[str, ...]:
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    for name in names:
        if not SCOPE_PATTERN.match(name):
            raise argparse.ArgumentTypeError(f"invalid scope {name!r}")
    return names


def add_limit_flags(p: ServiceParser) -> None:
    """The flags of EdgeLimits (each also an XDSBUS_* variable; services/edge/README.md)."""
    d = EdgeLimits()
    p.env_flag(
        "--max-streams",
        "XDSBUS_MAX_STREAMS",
        type=_count,
        default=d.max_streams,
        help="xDS streams open at once; one more is refused with RESOURCE_EXHAUSTED",
    )
    p.env_flag(
        "--max-queued-requests",
        "XDSBUS_MAX_QUEUED_REQUESTS",
        type=_count,
        default=d.max_queued_requests,
        help="requests waiting on one stream; a proxy sending more is cut off with RESOURCE_EXHAUSTED",
    )
    p.env_flag(
        "--max-request-bytes",
        "XDSBUS_MAX_REQUEST_BYTES",
        type=parse_bytes,
        default=d.max_request_bytes,
        shown_default="4MiB",
        help="largest xDS request accepted (gRPC answers RESOURCE_EXHAUSTED beyond)",
    )
    p.env_flag(
        "--allowed-scopes",
        "XDSBUS_ALLOWED_SCOPES",
        type=_scope_names,
        default=(),
        shown_default="any name",
        help="comma-separated scopes proxies may ask for besides --scopes; others get PERMISSION_DENIED",
    )
    p.env_flag(
        "--max-scopes",
        "XDSBUS_MAX_SCOPES",
        type=_count,
        default=d.max_scopes,
        help="scopes followed at once besides --scopes; a new one past it is refused with RESOURCE_EXHAUSTED",
    )
    p.env_flag(
        "--scope-idle-timeout",
        "XDSBUS_SCOPE_IDLE_TIMEOUT",
        type=_seconds,
        default=d.scope_idle_timeout,
        help="seconds after its last stream a scope not in --scopes stops being followed (0: never)",
    )
    p.env_flag(
        "--max-connection-age",
        "XDSBUS_MAX_CONNECTION_AGE",
        type=_seconds,
        default=d.max_connection_age,
        help="seconds after which a proxy's connection is asked to go away, so proxies spread onto new "
        "replicas (0: never)",
    )
    p.env_flag(
        "--max-connection-age-grace",
        "XDSBUS_MAX_CONNECTION_AGE_GRACE",
        type=_seconds,
        default=d.max_connection_age_grace,
        help="seconds the streams of such a connection may still run before they are ended",
    )
    p.env_flag(
        "--max-response-bytes",
        "XDSBUS_MAX_RESPONSE_BYTES",
        type=parse_bytes,
        default=d.max_response_bytes,
        shown_default="16MiB",
        help="response bytes being built and written across all streams at once; streams wait their turn",
    )
    p.env_flag(
        "--write-timeout",
        "XDSBUS_WRITE_TIMEOUT",
        type=_seconds,
        default=d.write_timeout,
        help="seconds a proxy has to read one response before its stream is ended (0: no limit)",
    )


def limits_from_args(args: argparse.Namespace) -> EdgeLimits:
    """EdgeLimits from the parsed flags of add_limit_flags."""
    return EdgeLimits(
        max_streams=args.max_streams,
        max_queued_requests=args.max_queued_requests,
        max_request_bytes=args.max_request_bytes,
        allowed_scopes=args.allowed_scopes,
        max_scopes=args.max_scopes,
        scope_idle_timeout=args.scope_idle_timeout,
        max_connection_age=args.max_connection_age,
        max_connection_age_grace=args.max_connection_age_grace,
        max_response_bytes=args.max_response_bytes,
        write_timeout=args.write_timeout,
    )
