"""Flags every xdsbus service takes, each falling back to its XDSBUS_* environment variable.

A service builds a `ServiceParser`, declares its flags with `env_flag` and parses with `parse`: a bad value,
on the command line or in the environment, is a usage error (exit status 2, argparse's message form) that
names the flag or the variable it came from, never a traceback. Values are converted after argparse has
parsed, because argparse checks neither `choices` nor a converter's errors against the source of a
default."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from xdsbus.bus import DEFAULT_NATS_URL
from xdsbus.health import DISABLED, default_listen, listen_address
from xdsbus.layout import DEFAULT_LEASE_TTL as DEFAULT_LEASE_TTL
from xdsbus.layout import Caps, cap_variable
from xdsbus.lease import pod_identity
from xdsbus.logs import LOG_FORMATS
from xdsbus.nats_options import (
    FILE_VARIABLES,
    INBOX_PREFIX_VARIABLE,
    MAX_PINGS_OUT_VARIABLE,
    PING_INTERVAL_VARIABLE,
    RECONNECT_WAIT_VARIABLE,
    USER_VARIABLE,
    split_servers,
)
from xdsbus.secretbox import LOCAL_KEY_FILE, SecretBox, SecretKeyError


def default_instance_id() -> str:
    """`<hostname>-<pid>`: unique enough among replicas, readable in leases and in logs."""
    return f"{socket.gethostname()}-{os.getpid()}"


def pod_instance_id() -> str:
    """The pod's name (`POD_NAME`, else the host name): what a watcher holds its source lease as, the same
    for a restarted process, so it takes its own lease back at once (docs/design.md §4)."""
    return pod_identity()


def instance_name(value: str) -> str:
    """A non-empty holder name for a lease."""
    if not value:
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def lease_seconds(value: str) -> float:
    """A lease TTL: at least one second, so that renewals (every third of it) keep up."""
    seconds = positive_float(value)
    if seconds < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 second, not {value!r}")
    return seconds


@dataclasses.dataclass(frozen=True, slots=True)
class _EnvFlag:
    flag: str
    env: str
    convert: Callable[[str], Any]
    default: Any
    choices: tuple[str, ...]


class ServiceParser(argparse.ArgumentParser):
    """An argument parser whose `env_flag`s default to environment variables, converted and checked in
    `parse` so that an error names where the bad value came from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._env_flags: dict[str, _EnvFlag] = {}
        self._env_settings: list[_EnvFlag] = []
        self._sources: dict[str, str] = {}

    def env_flag(
        self,
        flag: str,
        env: str,
        *,
        default: Any,
        help: str,
        type: Callable[[str], Any] = str,
        choices: Sequence[str] = (),
        shown_default: str | None = None,
    ) -> None:
        """Declare `flag`, falling back to the variable `env`, then to `default` (not converted).
        `type` converts a given string: a ValueError or TypeError reads "invalid <type> value", an
        argparse.ArgumentTypeError its own message."""
        shown = shown_default if shown_default is not None else default
        action = self.add_argument(
            flag,
            default=argparse.SUPPRESS,
            help=f"{help} (env {env}; default {shown})",
        )
        self._env_flags[action.dest] = _EnvFlag(flag, env, type, default, tuple(choices))

    def env_setting(self, env: str, *, type: Callable[[str], Any], help: str) -> None:
        """Check the variable `env`, which the service reads elsewhere and has no flag, at `parse`."""
        self._env_settings.append(_EnvFlag("", env, type, None, ()))
        self.epilog = f"{self.epilog or 'Also from the environment:'} {env} ({help})."

    def parse(self, argv: Sequence[str] | None = None) -> argparse.Namespace:
        """Parse `argv` (default: sys.argv), fill each env flag from its flag, variable or default, and
        convert it; on a bad value print usage and exit with status 2."""
        args = self.parse_args(argv)
        for dest, spec in self._env_flags.items():
            if hasattr(args, dest):
                raw, source = getattr(args, dest), spec.flag
            elif spec.env in os.environ:
                raw, source = os.environ[spec.env], spec.env
            else:
                setattr(args, dest, spec.default)
                self._sources[dest] = spec.flag
                continue
            self._sources[dest] = source
            setattr(args, dest, self._convert(spec, raw, source))
        for spec in self._env_settings:
            if spec.env in os.environ:
                self._convert(spec, os.environ[spec.env], spec.env)
        return args

    def source(self, dest: str) -> str:
        """Where the parsed value of `dest` came from: its flag or its environment variable."""
        return self._sources.get(dest) or self._env_flags[dest].flag

    def fail(self, dest: str, message: str) -> NoReturn:
        """A usage error about the value of `dest`, naming its flag or variable."""
        self.error(f"{self.source(dest)}: {message}")

    def _convert(self, spec: _EnvFlag, raw: str, source: str) -> Any:
        if spec.choices and raw not in spec.choices:
            choices = ", ".join(repr(c) for c in spec.choices)
            self.error(f"{source}: invalid choice: {raw!r} (choose from {choices})")
        try:
            return spec.convert(raw)
        except argparse.ArgumentTypeError as exc:
            self.error(f"{source}: {exc}")
        except (TypeError, ValueError):
            name = getattr(spec.convert, "__name__", repr(spec.convert))
            self.error(f"{source}: invalid {name} value: {raw!r}")


def log_level(value: str) -> str:
    """A logging level name (debug, info, warning, error, ...), as given."""
    if not isinstance(logging.getLevelName(value.upper()), int):
        raise argparse.ArgumentTypeError(f"unknown level {value!r}")
    return value


def _number(value: str, convert: type[int] | type[float]) -> float:
    try:
        return convert(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid {convert.__name__} value: {value!r}") from None


def port(value: str) -> int:
    """A TCP port number, 1 to 65535."""
    number = int(_number(value, int))
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port {number} is out of range 1-65535")
    return number


def positive_int(value: str) -> int:
    """A whole number above 0."""
    number = int(_number(value, int))
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {number}")
    return number


def positive_float(value: str) -> float:
    """A number above 0."""
    number = _number(value, float)
    if not number > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value!r}")
    return number


def readable_file(value: str) -> str:
    """The path of a file this process can read."""
    if not os.access(value, os.R_OK) or not os.path.isfile(value):
        raise argparse.ArgumentTypeError(f"no readable file at {value!r}")
    return value


def nats_servers(value: str) -> str:
    """A comma-separated list of NATS URLs with at least one server."""
    try:
        split_servers(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def add_common_flags(parser: ServiceParser) -> None:
    """`--nats-url`, `--log-format` and `--log-level`, with their environment fallbacks, the stream
    layout's variables every service reads through `BusSettings.from_env`, and the NATS credential and
    TLS files (`nats_options`; variables only, so that no process list shows them)."""
    parser.env_flag(
        "--nats-url",
        "XDSBUS_NATS_URL",
        default=DEFAULT_NATS_URL,
        type=nats_servers,
        help="NATS server(s), comma-separated",
    )
    parser.env_setting(USER_VARIABLE, type=str, help="NATS user, with XDSBUS_NATS_PASSWORD_FILE")
    for variable, what in FILE_VARIABLES.items():
        parser.env_setting(variable, type=readable_file, help=what)
    parser.env_setting(INBOX_PREFIX_VARIABLE, type=str, help="NATS reply inboxes, _INBOX_<user> by default")
    parser.env_setting(
        PING_INTERVAL_VARIABLE, type=positive_float, help="seconds between NATS pings, 10 by default"
    )
    parser.env_setting(
        MAX_PINGS_OUT_VARIABLE,
        type=positive_int,
        help="unanswered NATS pings before reconnecting, 3 by default",
    )
    parser.env_setting(
        RECONNECT_WAIT_VARIABLE,
        type=positive_float,
        help="most seconds between NATS reconnect attempts, 2 by default",
    )
    parser.env_flag(
        "--log-format", "XDSBUS_LOG_FORMAT", default="text", choices=LOG_FORMATS, help="text or json"
    )
    parser.env_flag(
        "--log-level",
        "XDSBUS_LOG_LEVEL",
        default="info",
        type=log_level,
        help="debug, info, warning or error",
    )
    parser.env_setting("XDSBUS_NATS_REPLICAS", type=positive_int, help="replicas of streams and buckets")
    # The layout's size caps: a service compares them with the server's at start (bus.check_layout).
    for cap in dataclasses.fields(Caps):
        parser.env_setting(cap_variable(cap.name), type=positive_int, help=f"size cap of {cap.name}, bytes")


def add_lease_flags(parser: ServiceParser, leases: str) -> None:
    """`--instance-id` and `--lease-ttl` of a watcher; `leases` names the leases the replica holds."""
    parser.env_flag(
        "--instance-id",
        "XDSBUS_INSTANCE_ID",
        type=instance_name,
        default=pod_instance_id(),
        shown_default="POD_NAME, else the host name",
        help=f"this replica's name in {leases} and in logs: a restarted process of the same name takes "
        "them back at once",
    )
    parser.env_flag(
        "--lease-ttl",
        "XDSBUS_LEASE_TTL",
        type=lease_seconds,
        default=DEFAULT_LEASE_TTL,
        help="seconds after which a standby takes over from a replica that died (the leases bucket's "
        "TTL is a layout setting: a difference is named at start)",
    )


def add_health_flag(parser: ServiceParser) -> None:
    """`--http-listen`: the port of /metrics, /ready and /live (`xdsbus.health`), on by default on every
    interface at the service's own port, since Kubernetes probes need it; `off` disables it."""
    listen = default_listen(parser.prog)
    parser.env_flag(
        "--http-listen",
        "XDSBUS_HTTP_LISTEN",
        type=listen_address,
        default=listen,
        shown_default=f"{listen}, skipped if that port is taken" if listen else DISABLED,
        help=f"HOST:PORT of /metrics, /ready and /live, or {DISABLED!r}",
    )


def watcher_secret_box(log: logging.Logger) -> SecretBox | None:
    """The keyring a watcher seals Secrets with (XDSBUS_SECRET_KEY, XDSBUS_SECRET_KEY_FILE, else the local
    stack's file); None after logging why when there is none: the watcher must then exit with status 2."""
    try:
        box = SecretBox.from_env(default_key_file=LOCAL_KEY_FILE)
    except (SecretKeyError, OSError) as exc:
        log.error("no usable secret key (set XDSBUS_SECRET_KEY or XDSBUS_SECRET_KEY_FILE): %s", exc)
        return None
    log.info("keyring: %s", box.describe())
    return box
