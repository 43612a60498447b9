"""The permission table of docs/design.md §10 against a real nats-server: each role's credentials
cannot do another role's writes, and can do their own."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.client import Client
from nats.errors import TimeoutError as NatsTimeoutError

from xdsbus.bus import LEDGER_SUBJECT_PREFIX, RESOURCES_BUCKET
from xdsbus.events import EVENTS_SUBJECT_PREFIX
from xdsbus.layout import PROXIES_BUCKET
from xdsbus_dev.harness.processes import NatsServer, eventually, tool
from xdsbus_dev.nats_users import local_roles


@pytest.fixture(scope="module")
def users_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path_factory.mktemp("nats-users") / "store", users=local_roles("e2e"))
    server.start()
    yield server
    server.stop()


@dataclasses.dataclass
class RoleClient:
    """A connection as one role, with the asynchronous errors the server sent it."""

    nc: Client
    errors: list[str]


@asynccontextmanager
async def connected(server: NatsServer, user: str) -> AsyncIterator[RoleClient]:
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(**server.options(user).connect_kwargs(), error_cb=on_error, connect_timeout=2)
    try:
        yield RoleClient(nc, errors)
    finally:
        await nc.close()


async def refused(client: RoleClient, subject: str, payload: bytes = b"x") -> str:
    """Publish to `subject` through JetStream, expecting no ack and the server's permission error."""
    js = client.nc.jetstream(timeout=1)
    with pytest.raises(NatsTimeoutError):
        await js.publish(subject, payload)

    async def reported() -> str | None:
        return next((e for e in client.errors if subject.lower() in e.lower()), None)

    error = await eventually(reported, timeout=5, what=f"a permission error for {subject}")
    assert "permissions violation" in error
    return error


async def test_the_edge_cannot_publish_an_event(users_server: NatsServer) -> None:
    async with connected(users_server, "edge") as edge:
        await refused(edge, f"{EVENTS_SUBJECT_PREFIX}.file.e2e.Service")
        await refused(edge, f"$KV.{RESOURCES_BUCKET}.abc")


async def test_only_edges_write_proxy_status(users_server: NatsServer) -> None:
    async with connected(users_server, "edge") as edge:
        ack = await edge.nc.jetstream(timeout=5).publish(f"$KV.{PROXIES_BUCKET}.gw-1.edge-a", b"{}")
        assert ack.seq > 0
    for role in ("reader", "builder"):
        async with connected(users_server, role) as other:
            await refused(other, f"$KV.{PROXIES_BUCKET}.gw-1.edge-a")


async def test_a_watcher_cannot_write_the_ledger_nor_another_sources_events(users_server: NatsServer) -> None:
    async with connected(users_server, "watch-file") as watcher:
        await refused(watcher, f"{LEDGER_SUBJECT_PREFIX}.default")
        await refused(watcher, f"$KV.{RESOURCES_BUCKET}.abc")
        await refused(watcher, f"{EVENTS_SUBJECT_PREFIX}.file.other.Service")
        await refused(watcher, f"{EVENTS_SUBJECT_PREFIX}.k8s.default.Service")
        # Its own subjects are open to it.
        ack = await watcher.nc.jetstream(timeout=5).publish(f"{EVENTS_SUBJECT_PREFIX}.file.e2e.Probe", b"x")
        assert ack.seq > 0


async def test_the_builder_cannot_publish_a_sources_events(users_server: NatsServer) -> None:
    async with connected(users_server, "builder") as builder:
        await refused(builder, f"{EVENTS_SUBJECT_PREFIX}.file.e2e.Service")
        ack = await builder.nc.jetstream(timeout=5).publish(f"{LEDGER_SUBJECT_PREFIX}.probe", b"x")
        assert ack.seq > 0


async def test_readers_write_nothing_and_the_operator_only_pins(users_server: NatsServer) -> None:
    async with connected(users_server, "reader") as reader:
        await refused(reader, f"{EVENTS_SUBJECT_PREFIX}.operator.cli.LedgerPin")
        await refused(reader, f"{LEDGER_SUBJECT_PREFIX}.default")
    async with connected(users_server, "operator") as operator:
        await refused(operator, f"{LEDGER_SUBJECT_PREFIX}.default")
        await refused(operator, f"{EVENTS_SUBJECT_PREFIX}.file.e2e.Service")
        # Operators pin, nothing else: not even another kind under their own source.
        await refused(operator, f"{EVENTS_SUBJECT_PREFIX}.operator.cli.Ingress")


async def test_only_the_layout_user_manages_streams(users_server: NatsServer) -> None:
    for user in ("builder", "edge", "watch-file", "reader"):
        async with connected(users_server, user) as client:
            with pytest.raises((NatsTimeoutError, asyncio.TimeoutError)):
                await client.nc.jetstream(timeout=1).delete_stream("XDSBUS_EVENTS")
            assert any("$js.api.stream.delete" in e.lower() for e in client.errors), user


async def test_a_wrong_password_is_refused(users_server: NatsServer) -> None:
    options = users_server.options("edge")
    kwargs = {**options.connect_kwargs(), "password": "pnotit"}
    with pytest.raises(Exception) as caught:
        await nats.connect(**kwargs, connect_timeout=2, max_reconnect_attempts=0, allow_reconnect=False)
    assert "authorization" in str(caught.value).lower() or "no servers" in str(caught.value).lower()


async def test_a_role_cannot_read_another_roles_replies(users_server: NatsServer) -> None:
    """Replies (a resource body the edge asked for, say) go to the asker's own inboxes only."""
    async with connected(users_server, "watch-file") as watcher:
        assert watcher.nc._inbox_prefix == bytearray(b"_INBOX_watch-file")
        for inboxes in ("_INBOX_edge.>", "_INBOX.>", ">"):
            await watcher.nc.subscribe(inboxes)

            async def reported(inboxes: str = inboxes) -> str | None:
                return next(
                    (e for e in watcher.errors if f'subscription to "{inboxes.lower()}"' in e.lower()), None
                )

            await eventually(reported, timeout=5, what=f"a permission error for {inboxes}")


@pytest.mark.parametrize(
    ("user", "argv"),
    [
        ("reader", ["ledger", "log"]),
        ("reader", ["status"]),
        ("reader", ["replay", "--seq", "1"]),
        ("layout", ["layout"]),
    ],
)
def test_the_cli_reads_as_the_reader_and_checks_the_layout_as_layout(
    users_server: NatsServer, user: str, argv: list[str]
) -> None:
    env = {**os.environ, **users_server.client_env(user)}
    result = subprocess.run(
        [tool("xdsbus"), *argv, "--nats-url", users_server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "permission" not in result.stdout + result.stderr


def test_the_cli_without_credentials_gives_up_saying_why(users_server: NatsServer) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDSBUS_NATS_")}
    result = subprocess.run(
        [tool("xdsbus"), "status", "--nats-url", users_server.url],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "cannot connect to NATS" in result.stderr and "Authorization Violation" in result.stderr
    assert "hint: NATS refused these credentials" in result.stderr
    assert "XDSBUS_NATS_PASSWORD_FILE=.data/nats-users/reader" in result.stderr
    assert "Traceback" not in result.stderr
