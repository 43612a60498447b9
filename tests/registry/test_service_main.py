"""run_registry_service's flags and lifecycle: what the watch-nacos, watch-consul and watch-eureka mains
call."""

from __future__ import annotations

import asyncio

import pytest
from nats.js.errors import KeyNotFoundError

from tests.registry.support import Source, World, hostnames, mcpbridge, registry, service, until_async
from xdsbus.bus import Bus
from xdsbus.registry.service_main import parse_settings, serve
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.processes import NatsServer

PROG = "xdsbus-watch-fake"
TYPES = frozenset({"fake"})


def test_flags_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDSBUS_GROUP", "blue")
    monkeypatch.setenv("XDSBUS_LEASE_TTL", "3")
    monkeypatch.setenv("XDSBUS_INSTANCE_ID", "pod-7")
    settings = parse_settings(["--system-namespace", "gw"], PROG, TYPES)
    assert (settings.group, settings.lease_ttl, settings.instance_id) == ("blue", 3.0, "pod-7")
    assert settings.system_namespace == "gw"
    assert parse_settings([], PROG, TYPES).group == "blue"


@pytest.mark.parametrize(
    "argv",
    [
        ["--lease-ttl", "soon"],
        ["--lease-ttl", "0.5"],
        ["--group", "a.b"],
        ["--system-namespace", "Higress_System"],
        ["--log-format", "xml"],
        ["--log-level", "loud"],
    ],
)
def test_bad_flags_exit_with_status_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv, PROG, TYPES)
    assert exit_info.value.code == 2
    assert argv[0] in capsys.readouterr().err


async def test_serve_runs_the_registries_until_stopped_and_releases_the_lease(
    bus: Bus, nats_server: NatsServer
) -> None:
    await Source(bus, "file/examples").put(mcpbridge(registry("fake", "one")))
    world = World()
    world.put("fake/one", service("a"))
    settings = parse_settings(["--nats-url", nats_server.url, "--instance-id", "only"], PROG, TYPES)
    stop = asyncio.Event()
    task = asyncio.create_task(serve(settings, PROG, TYPES, world.factory, SecretBox(b"k" * 32), stop))

    async def published() -> bool:
        return await hostnames(bus, "fake/one") == {"a.fake"}

    await until_async(published, "the registry's services")
    assert (await bus.leases.get("watch-fake.default")).value == b"only"
    stop.set()
    await asyncio.wait_for(task, 15)
    assert world.running["fake/one"] == 0
    with pytest.raises(KeyNotFoundError):
        await bus.leases.get("watch-fake.default")
