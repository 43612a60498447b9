"""The NATS users of `xdsbus up` and compose (xdsbus_dev.local_nats): `user:password` files kept across
runs, and a config nats-server starts with."""

from __future__ import annotations

import stat
from pathlib import Path

import nats

from xdsbus.nats_options import NatsOptions
from xdsbus_dev.harness.processes import Service, free_port, tool, wait_for_port
from xdsbus_dev.local_nats import LocalNatsUsers, main
from xdsbus_dev.nats_users import COMPOSE_ROLES, local_roles


def test_passwords_are_private_and_kept_across_runs(tmp_path: Path) -> None:
    users = LocalNatsUsers(tmp_path / "users", local_roles("examples"))
    users.ensure()
    first = users.password_file("builder").read_text()
    assert first.startswith("builder:p")
    assert stat.S_IMODE(users.password_file("builder").stat().st_mode) == 0o600
    assert stat.S_IMODE(users.config_file.stat().st_mode) == 0o600
    again = LocalNatsUsers(tmp_path / "users", local_roles("examples"))
    again.ensure()
    assert again.password_file("builder").read_text() == first
    assert again.server_env()["BUILDER_NATS_PASSWORD"] == first.strip().partition(":")[2]
    # Without `inline`, the config names the variables only.
    assert first.strip().partition(":")[2] not in users.config_file.read_text()


async def test_the_compose_config_admits_each_role_from_its_file(tmp_path: Path) -> None:
    assert main([str(tmp_path / "users")]) == 0
    port = free_port()
    server = Service(
        [
            tool("nats-server"),
            "-c",
            str(tmp_path / "users" / "nats.conf"),
            "-a",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        tmp_path / "nats.log",
    ).start()
    try:
        wait_for_port(port)
        for role in COMPOSE_ROLES:
            env = {"XDSBUS_NATS_PASSWORD_FILE": str(tmp_path / "users" / role.user)}
            options = NatsOptions.from_env(f"nats://127.0.0.1:{port}", environ=env)
            nc = await nats.connect(**options.connect_kwargs(), connect_timeout=2, allow_reconnect=False)
            await nc.flush(timeout=2)
            await nc.close()
    finally:
        server.terminate()
