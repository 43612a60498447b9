"""`xdsbus-watch-k8s` as a real process: kubeconfig with a token, environment fallbacks, status writes,
JSON logs, and a clean stop on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import KeyNotFoundError

from tests.fakes.kube_api import FakeKubeApi
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import ingress, service, wait_synced
from xdsbus.bus import Bus
from xdsbus.events import Op
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, tool
from xdsbus_watch_k8s.main import parse_settings
from xdsbus_watch_k8s.status_writer import lease_name


async def test_service_publishes_writes_status_and_stops_on_sigterm(
    tmp_path: Path, nats_server: NatsServer, bus: Bus
) -> None:
    events = EventLog(bus)
    async with FakeKubeApi(token="s3cret") as kube:
        kube.create(service("web"))
        kube.create(ingress("site"))
        kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
        proc = Service(
            [
                tool("xdsbus-watch-k8s"),
                "--nats-url",
                nats_server.url,
                "--gateway-address",
                "192.0.2.10",
                "--log-format",
                "json",
            ],
            tmp_path / "watch-k8s.log",
            # The environment fallbacks: the kubeconfig, the cluster name and the replica's name.
            env={"KUBECONFIG": str(kubeconfig), "XDSBUS_CLUSTER": "prod", "XDSBUS_INSTANCE_ID": "replica-1"},
        ).start()
        try:
            await wait_synced(events, "Service", "Ingress")
            assert {e.source for e in events.events} == {"k8s/prod"}
            assert events.of(Op.UPSERT, "Service")[0].key == "default/web"

            def load_balancer() -> Any:
                obj = kube.get("networking.k8s.io/v1", "Ingress", "default", "site") or {}
                return obj.get("status", {}).get("loadBalancer", {}).get("ingress")

            await eventually(lambda: _value(load_balancer() == [{"ip": "192.0.2.10"}]), what="status write")
            assert (await bus.leases.get(lease_name("prod"))).value == b"replica-1"
        finally:
            code = await asyncio.to_thread(proc.terminate)
    assert code == 0, proc.output()

    lines = [json.loads(line) for line in proc.output().splitlines() if line.strip()]
    started = next(line for line in lines if line["msg"].startswith("watching http"))
    assert started["instance_id"] == "replica-1" and started["ingress_class"] == "higress"
    assert lines[-1]["msg"] == "stopped"
    # The lease is handed back on the way out, so a standby takes over at once.
    with pytest.raises(KeyNotFoundError):
        await bus.leases.get(lease_name("prod"))


async def _value(value: bool) -> bool:
    return value


async def run_cli(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run the command to its end; its exit status and stderr."""
    proc = await asyncio.create_subprocess_exec(
        tool("xdsbus-watch-k8s"),
        *args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "XDSBUS_SECRET_KEY_FILE": "/dev/null/none", **(env or {})},
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, stderr.decode()


async def test_configuration_errors_exit_2(tmp_path: Path) -> None:
    key = {"XDSBUS_SECRET_KEY": "a" * 43 + "="}
    # Concurrently: each start pays for importing the Kubernetes client.
    no_cluster, missing, no_key = await asyncio.gather(
        run_cli("--nats-url", "nats://127.0.0.1:1", env=key),
        run_cli("--kubeconfig", str(tmp_path / "nope"), env=key),
        run_cli("--kubeconfig", str(tmp_path / "nope")),
    )
    assert no_cluster[0] == 2 and "no cluster configuration" in no_cluster[1]
    assert missing[0] == 2 and "does not exist" in missing[1]
    assert no_key[0] == 2 and "no usable secret key" in no_key[1]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--cluster", "a.b"], "--cluster 'a.b'"),
        (["--watch-namespace", "Team_A"], "not a namespace name"),
        (["--resync-timeout", "0"], "at least 1"),
        (["--log-format", "xml"], "--log-format"),
    ],
)
def test_bad_flags(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        parse_settings(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_flags_fall_back_to_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDSBUS_INGRESS_CLASS", "")  # empty is meaningful: every Ingress
    monkeypatch.setenv("XDSBUS_GATEWAY_ADDRESS", "10.0.0.1, gw.example.com,")
    monkeypatch.setenv("XDSBUS_WATCH_NAMESPACE", "team-a")
    monkeypatch.setenv("XDSBUS_RESYNC_TIMEOUT", "60")
    settings = parse_settings([])
    assert settings.ingress_class == ""
    assert settings.gateway_addresses == ("10.0.0.1", "gw.example.com")
    assert settings.watch_namespace == "team-a" and settings.resync_timeout == 60
    assert settings.cluster == "default" and settings.system_namespace == "higress-system"
    assert parse_settings(["--ingress-class", "nginx"]).ingress_class == "nginx"
