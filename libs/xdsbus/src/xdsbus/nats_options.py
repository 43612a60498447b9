"""How a service reaches NATS (docs/design.md §9, §10): the servers, the credentials and TLS.

Credentials come from files named by XDSBUS_* variables, never from flags (a process list shows flags)
nor from the variables' values themselves. A password inside a URL still works, but every log line
names the servers through `redact_url`."""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"

USER_VARIABLE = "XDSBUS_NATS_USER"
PASSWORD_FILE_VARIABLE = "XDSBUS_NATS_PASSWORD_FILE"
NKEY_FILE_VARIABLE = "XDSBUS_NATS_NKEY_FILE"
CREDS_FILE_VARIABLE = "XDSBUS_NATS_CREDS_FILE"
CA_FILE_VARIABLE = "XDSBUS_NATS_CA_FILE"
CERT_FILE_VARIABLE = "XDSBUS_NATS_CERT_FILE"
KEY_FILE_VARIABLE = "XDSBUS_NATS_KEY_FILE"
INBOX_PREFIX_VARIABLE = "XDSBUS_NATS_INBOX_PREFIX"
PING_INTERVAL_VARIABLE = "XDSBUS_NATS_PING_INTERVAL"
MAX_PINGS_OUT_VARIABLE = "XDSBUS_NATS_MAX_PINGS_OUT"
RECONNECT_WAIT_VARIABLE = "XDSBUS_NATS_RECONNECT_WAIT"

# A half-open connection is noticed after about ping interval × (max pings out + 1): some 40 s here,
# where nats-py's own 120 s × 2 took minutes (issue 14).
DEFAULT_PING_INTERVAL = 10.0
DEFAULT_MAX_PINGS_OUT = 3
# Most seconds between two attempts at one server; the first attempts come much sooner (full jitter).
DEFAULT_RECONNECT_WAIT = 2.0
# The first reconnect delay's ceiling; it doubles per failed attempt up to the reconnect wait.
RECONNECT_BASE = 0.1

# The file variables, with what each holds: service_flags checks each names a readable file.
FILE_VARIABLES = {
    PASSWORD_FILE_VARIABLE: "NATS password (or `user:password` when XDSBUS_NATS_USER is unset)",
    NKEY_FILE_VARIABLE: "NATS NKey seed",
    CREDS_FILE_VARIABLE: "NATS .creds file (JWT and NKey seed)",
    CA_FILE_VARIABLE: "CA bundle that signed the NATS servers' certificates",
    CERT_FILE_VARIABLE: "client certificate for NATS (mTLS)",
    KEY_FILE_VARIABLE: "private key of the NATS client certificate",
}

PERMISSIONS_ERROR = "permissions violation"

log = logging.getLogger(__name__)


class NatsOptionsError(ValueError):
    """The NATS settings contradict each other or name a file that cannot be read."""


def split_servers(urls: str) -> tuple[str, ...]:
    """The servers of a comma-separated list, blanks dropped (`nats://a:4222, nats://b:4222`)."""
    servers = tuple(part.strip() for part in urls.split(",") if part.strip())
    if not servers:
        raise NatsOptionsError("no NATS server given")
    return servers


_SUBJECT_TOKEN = re.compile(r"[A-Za-z0-9_-]+")


def _url_user(url: str) -> str | None:
    """The user of a `user:password@` URL (a lone token is no user name, and must not reach a subject)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    return parts.username if parts.password is not None else None


def inbox_prefix(user: str) -> str:
    """The inbox prefix of `user`'s replies: `_INBOX_<user>` (what its permissions let it subscribe to)."""
    return f"_INBOX_{user}"


def redact_url(url: str) -> str:
    """`url` with any password or token replaced by `***` (a user name stays), for logs; each of a
    comma-separated list too."""
    if "," in url:
        return ",".join(redact_url(part.strip()) for part in url.split(","))
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable NATS URL>"
    if "@" not in parts.netloc:
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    # A lone userinfo without a colon is a token: as secret as a password.
    shown = f"{user}:***" if colon else "***"
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


def _read_secret(path: Path, what: str) -> str:
    try:
        text = path.read_text().strip()
    except OSError as exc:
        raise NatsOptionsError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    if not text:
        raise NatsOptionsError(f"the {what} file {path} is empty")
    return text


@dataclasses.dataclass(frozen=True)
class NatsOptions:
    """Servers, one kind of credential at most, and TLS for a NATS connection."""

    servers: tuple[str, ...] = (DEFAULT_NATS_URL,)
    user: str | None = None
    password_file: Path | None = None
    nkey_file: Path | None = None
    creds_file: Path | None = None
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # Where replies to this client arrive. A role may subscribe to its own inboxes only (docs/design.md
    # §10), so that it cannot read another role's JetStream replies: `_INBOX_<user>` once the user is
    # known, else this (XDSBUS_NATS_INBOX_PREFIX; needed with an NKey or a .creds file).
    inbox_prefix: str | None = None
    # Keepalive and reconnection (XDSBUS_NATS_PING_INTERVAL, _MAX_PINGS_OUT, _RECONNECT_WAIT).
    ping_interval: float = DEFAULT_PING_INTERVAL
    max_pings_out: int = DEFAULT_MAX_PINGS_OUT
    reconnect_wait: float = DEFAULT_RECONNECT_WAIT

    @classmethod
    def from_env(cls, url: str | None = None, environ: Mapping[str, str] = os.environ) -> NatsOptions:
        """Options from XDSBUS_NATS_* variables; an explicit `url` (comma-separated) takes precedence over
        XDSBUS_NATS_URL."""

        def path(variable: str) -> Path | None:
            value = environ.get(variable)
            return Path(value) if value else None

        return cls(
            servers=split_servers(url or environ.get("XDSBUS_NATS_URL") or DEFAULT_NATS_URL),
            user=environ.get(USER_VARIABLE) or None,
            password_file=path(PASSWORD_FILE_VARIABLE),
            nkey_file=path(NKEY_FILE_VARIABLE),
            creds_file=path(CREDS_FILE_VARIABLE),
            ca_file=path(CA_FILE_VARIABLE),
            cert_file=path(CERT_FILE_VARIABLE),
            key_file=path(KEY_FILE_VARIABLE),
            inbox_prefix=environ.get(INBOX_PREFIX_VARIABLE) or None,
            ping_interval=_number(environ, PING_INTERVAL_VARIABLE, DEFAULT_PING_INTERVAL),
            max_pings_out=int(_number(environ, MAX_PINGS_OUT_VARIABLE, DEFAULT_MAX_PINGS_OUT)),
            reconnect_wait=_number(environ, RECONNECT_WAIT_VARIABLE, DEFAULT_RECONNECT_WAIT),
        )

    def keepalive_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect` that make a client fit for a cluster: pings that notice
        a half-open connection in seconds, and reconnects spread by jitter over the servers."""
        return {
            "ping_interval": self.ping_interval,
            "max_outstanding_pings": self.max_pings_out,
            "reconnect_to_server_handler": JitteredReconnect(self.reconnect_wait),
        }

    def describe(self) -> str:
        """The servers, redacted, and how this client authenticates: safe for a log line."""
        servers = ",".join(redact_url(s) for s in self.servers)
        if self.creds_file:
            auth = f"creds file {self.creds_file}"
        elif self.nkey_file:
            auth = f"NKey seed file {self.nkey_file}"
        elif self.password_file:
            auth = f"user {self.user} with password file" if self.user else "user:password file"
        else:
            auth = "no credentials"
        tls = ", TLS" if self.ca_file or self.cert_file else ""
        return f"{servers} ({auth}{tls})"

    def connect_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `nats.connect`: servers, credentials and TLS. Reads the password file
        now, so that a rotated Secret is picked up at the next start."""
        chosen = [f for f in (self.password_file, self.nkey_file, self.creds_file) if f]
        if len(chosen) > 1:
            raise NatsOptionsError(
                f"set only one of {PASSWORD_FILE_VARIABLE}, {NKEY_FILE_VARIABLE} and {CREDS_FILE_VARIABLE}"
            )
        if self.user and not self.password_file:
            raise NatsOptionsError(f"{USER_VARIABLE} needs {PASSWORD_FILE_VARIABLE}")
        if bool(self.cert_file) != bool(self.key_file):
            raise NatsOptionsError(f"{CERT_FILE_VARIABLE} and {KEY_FILE_VARIABLE} go together")
        kwargs: dict[str, Any] = {"servers": list(self.servers)}
        if self.password_file:
            secret = _read_secret(self.password_file, "NATS password")
            if self.user:
                kwargs["user"], kwargs["password"] = self.user, secret
            else:
                user, colon, password = secret.partition(":")
                if not colon or not user:
                    raise NatsOptionsError(
                        f"{self.password_file} must hold `user:password` when {USER_VARIABLE} is unset"
                    )
                kwargs["user"], kwargs["password"] = user, password
        if self.nkey_file:
            _read_secret(self.nkey_file, "NATS NKey seed")
            kwargs["nkeys_seed"] = str(self.nkey_file)
        if self.creds_file:
            _read_secret(self.creds_file, "NATS creds")
            kwargs["user_credentials"] = str(self.creds_file)
        if self.ca_file or self.cert_file:
            kwargs["tls"] = self.tls_context()
        named: str | None = kwargs.get("user") or _url_user(self.servers[0])
        prefix = self.inbox_prefix or (
            inbox_prefix(named) if named and _SUBJECT_TOKEN.fullmatch(named) else None
        )
        if prefix:
            kwargs["inbox_prefix"] = prefix
        return kwargs

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context trusting `ca_file` (else the system's CAs), with the client certificate
        when one is set."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file and self.key_file:
                context.load_cert_chain(str(self.cert_file), str(self.key_file))
        except (OSError, ssl.SSLError) as exc:
            raise NatsOptionsError(f"NATS TLS files unusable: {exc}") from None
        return context


def _number(environ: Mapping[str, str], variable: str, default: float) -> float:
    value = environ.get(variable)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise NatsOptionsError(f"{variable} must be a number of seconds, not {value!r}") from None
    if number <= 0:
        raise NatsOptionsError(f"{variable} must be above 0, not {value!r}")
    return number


class JitteredReconnect:
    """A `reconnect_to_server_handler` for nats-py: the server tried least often (a random one of
    those), after a delay drawn from 0 to base·2^attempts capped at `cap` (full jitter), so that the
    clients of a restarted node do not all come back in the same instant, and the first attempt after
    a short blip comes at once."""

    def __init__(self, cap: float, base: float = RECONNECT_BASE) -> None:
        self.cap = cap
        self.base = base

    def __call__(self, servers: list[Any], info: dict[str, Any]) -> tuple[Any, float]:
        """The server to try next and the seconds to wait before."""
        fewest = min(server.reconnects for server in servers)
        server = random.choice([s for s in servers if s.reconnects == fewest])
        ceiling = min(self.cap, self.base * 2 ** min(fewest, 16))
        return server, random.uniform(0, ceiling)


@dataclasses.dataclass
class ConnectionState:
    """A client's link to NATS, for metrics and readiness (`Bus.connection`; health endpoints read
    it): whether it is connected, since when (unix seconds), how often it reconnected, and the
    latest asynchronous error. Fed by `ErrorReporter`'s callbacks."""

    connected: bool = False
    since: float = dataclasses.field(default_factory=time.time)
    reconnects: int = 0
    disconnects: int = 0
    last_error: str = ""
    # Set by `Bus.close`: the disconnection that follows is no fault.
    closed: bool = False
    # Monotonic twin of `since`, so that a wall-clock step does not fake an outage.
    _changed: float = dataclasses.field(default_factory=time.monotonic, repr=False)

    def mark(self, connected: bool) -> None:
        """Record a change of the link (a repeat of the same state is no change)."""
        if connected == self.connected:
            return
        self.connected = connected
        self.since = time.time()
        self._changed = time.monotonic()

    def disconnected_for(self) -> float:
        """Seconds since the link was lost; 0 while connected."""
        return 0.0 if self.connected else time.monotonic() - self._changed


class ErrorReporter:
    """`report` is an `error_cb` for `nats.connect` (which takes coroutine functions only) that logs
    one line per asynchronous error, without a traceback, and a repeat only at debug level until the
    client connects again (`connected`; nats-py reports each attempt while it cannot). A permission
    refusal names the subject (nats-py lowercases the server's message), so a missing grant shows in
    the log; other errors name the servers, redacted. `last` is the latest error's text, for the
    message of a connection that could not be made; `refusal` the latest authorization or
    authentication refusal, which explains it better than the connection reset that may follow it
    (the server closes the connection as it refuses, and the reset can win the race to the client)."""

    def __init__(self, name: str, options: NatsOptions, state: ConnectionState | None = None) -> None:
        self.name = name
        self.options = options
        self.state = state if state is not None else ConnectionState()
        self.last = ""
        self.refusal = ""
        self._seen: set[str] = set()

    async def connected(self) -> None:
        """The client is connected (first connection; no log line, the caller tells)."""
        self._seen.clear()
        self.state.mark(True)

    async def reconnected(self) -> None:
        """The client is connected again (a `reconnected_cb`): one line, and errors are news again."""
        self._seen.clear()
        self.state.reconnects += 1
        self.state.mark(True)
        log.warning("%s: reconnected to NATS at %s", self.name, self.options.describe())

    async def disconnected(self) -> None:
        """The client lost its server (a `disconnected_cb`; nats-py calls it again when closing)."""
        if not self.state.connected:
            return
        if self.state.closed:
            self.state.mark(False)
            return
        self.state.disconnects += 1
        self.state.mark(False)
        log.warning("%s: disconnected from NATS at %s; reconnecting", self.name, self.options.describe())

    async def report(self, exc: Exception) -> None:
        """Log `exc` (see the class)."""
        text = (str(exc) or type(exc).__name__).removeprefix("nats: ")
        level = logging.DEBUG if text in self._seen else logging.ERROR
        self._seen.add(text)
        self.last = text
        if "authorization" in text.lower() or "authentication" in text.lower():
            self.refusal = text
        self.state.last_error = text
        if PERMISSIONS_ERROR in text.lower():
            log.log(level, "%s: NATS refused this client's permission: %s", self.name, text)
        else:
            where = self.options.describe()
            log.log(min(level, logging.WARNING), "%s: NATS at %s: %s", self.name, where, text)


def error_callback(name: str, options: NatsOptions) -> Callable[[Exception], Awaitable[None]]:
    """The `error_cb` of a client called `name` (`ErrorReporter.report`)."""
    return ErrorReporter(name, options).report
