"""NATS with one user per role (docs/design.md §10): the stack runs on its own grants, and a role's
credentials cannot do another role's writes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from xdsbus_dev.harness.processes import NatsServer, Service, eventually, tool
from xdsbus_dev.harness.stack import Edge, Stack, service_manifest
from xdsbus_dev.nats_users import local_roles

pytestmark = pytest.mark.slow

_VIOLATION = re.compile(r"(Publish|Subscription) Violation.*")


def violations(server_log: str) -> list[str]:
    """The permission violations nats-server logged, one line each."""
    return [m.group(0) for m in _VIOLATION.finditer(server_log)]


async def test_the_stack_serves_a_route_with_a_user_per_role(tmp_path: Path) -> None:
    async with Stack(tmp_path, edges=1, nats_users=True) as stack:
        response = await stack.curl("/a")
        assert response.status == 200, response.text
        assert response.json()["pod"].startswith("echo-a")
        assert violations(stack.nats.output()) == []
        for name in ("builder", "watch-file", "edge-0"):
            assert "permission" not in (stack.log_dir / f"{name}.log").read_text(), name


def _clear_refusal(log: str, subject: str) -> bool:
    """One log line that names `subject` and a refused permission, and no traceback anywhere."""
    assert "Traceback" not in log, log
    return any("permission" in line and subject in line.lower() for line in log.splitlines())


async def test_services_report_a_refused_permission_clearly(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", users=local_roles("e2e"))
    server.start()
    config = tmp_path / "config"
    config.mkdir()
    # Each service runs with another role's credentials; its first write is refused.
    runs = {
        # The edge's credentials as a watcher: no lease, no event.
        "watch-file-as-edge": (
            [tool("xdsbus-watch-file"), "--dir", str(config), "--source-name", "e2e"],
            "edge",
            "$js.api.stream.msg.get.kv_xdsbus_leases",
        ),
        # A watcher's credentials as the builder: no builder lease, no ledger.
        "builder-as-watcher": (
            [tool("xdsbus-builder"), "--instance-id", "t"],
            "watch-file",
            "builder.default",
        ),
        # The builder's credentials as a watcher: no source lease, no event.
        "watch-file-as-builder": (
            [tool("xdsbus-watch-file"), "--dir", str(config), "--source-name", "e2e"],
            "builder",
            "watch.file.e2e",
        ),
    }
    services = {
        name: Service(
            [*argv, "--nats-url", server.url], tmp_path / f"{name}.log", env=server.client_env(user)
        ).start()
        for name, (argv, user, _) in runs.items()
    }
    try:
        for name, (_, _, subject) in runs.items():
            service = services[name]

            async def reported(service: Service = service, subject: str = subject) -> bool:
                return _clear_refusal(service.output(), subject)

            await eventually(reported, timeout=20, what=f"{name} reporting the refusal of {subject}")
        assert len(violations(server.output())) >= len(runs)
    finally:
        # Killed, not stopped: a service waits out its refused request (the JetStream timeout, 10 s)
        # before it stops on SIGTERM, and what it logged is all this test is about.
        for service in services.values():
            service.kill9()
        server.stop()


async def test_a_password_in_the_nats_url_never_reaches_a_log(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", users=local_roles("e2e"))
    config = tmp_path / "config"
    config.mkdir()
    (config / "svc.yaml").write_text(json.dumps(service_manifest("echo-a", 18081)))
    passwords = {}
    services = []
    logs = tmp_path / "logs"
    # The services start before NATS does: their lines about the unreachable server name the URL too.
    server.write_auth()
    for user, argv in (
        ("builder", [tool("xdsbus-builder"), "--instance-id", "t"]),
        ("watch-file", [tool("xdsbus-watch-file"), "--dir", str(config), "--source-name", "e2e"]),
    ):
        passwords[user] = server.password_file(user).read_text()
        url = f"nats://{user}:{passwords[user]}@127.0.0.1:{server.port}"
        services.append(Service([*argv, "--nats-url", url], logs / f"{user}.log").start())
    passwords["edge"] = server.password_file("edge").read_text()
    edge = Edge("edge", f"nats://edge:{passwords['edge']}@127.0.0.1:{server.port}", logs)
    edge.start()
    services.append(edge.service)
    try:

        async def retrying() -> bool:
            return all("***@127.0.0.1" in s.output() for s in services)

        await eventually(retrying, timeout=20, what="every service retrying NATS")
        server.start()
        await eventually(edge.ready, timeout=30, what="the edge ready")

        async def published() -> bool:
            return (
                "resync" in services[1].output() and "lease builder.default acquired" in services[0].output()
            )

        await eventually(published, timeout=20, what="the watcher publishing, the builder leading")
    finally:
        for service in services:
            service.terminate()
        server.stop()
    for service in services:
        log = service.output()
        assert "***@127.0.0.1" in log, log
        for password in passwords.values():
            assert password not in log, service.argv[0]
    assert violations(server.output()) == []
