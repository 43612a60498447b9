"""watch-k8s as its own NATS user (docs/design.md §10): it publishes, holds its leases and writes Ingress
status with nothing the server refuses."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from tests.fakes.kube_api import FakeKubeApi
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import ingress, service, wait_synced
from xdsbus.bus import BusSettings, connect
from xdsbus_dev.harness.processes import NatsServer, Service, eventually, tool
from xdsbus_dev.nats_users import local_roles


async def test_watch_k8s_runs_on_its_own_grants(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", users=local_roles("e2e"))
    server.start()
    bus = await connect(BusSettings(url=server.url, nats=server.options()), name="test")
    try:
        events = EventLog(bus)
        async with FakeKubeApi(token="s3cret") as kube:
            kube.create(service("web"))
            kube.create(ingress("site"))
            proc = Service(
                [tool("xdsbus-watch-k8s"), "--nats-url", server.url, "--gateway-address", "192.0.2.10"],
                tmp_path / "watch-k8s.log",
                env={
                    "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                    "XDSBUS_CLUSTER": "prod",
                    **server.client_env("watch-k8s"),
                },
            ).start()
            try:
                await wait_synced(events, "Service", "Ingress")
                assert {e.source for e in events.events} == {"k8s/prod"}

                async def status_written() -> bool:
                    obj: Any = kube.get("networking.k8s.io/v1", "Ingress", "default", "site") or {}
                    return bool(obj.get("status", {}).get("loadBalancer", {}).get("ingress"))

                await eventually(status_written, what="the status lease held and Ingress status written")
            finally:
                code = await asyncio.to_thread(proc.terminate)
        assert code == 0, proc.output()
        assert "Violation" not in server.output()
        assert "permission" not in proc.output()
    finally:
        await bus.close()
        server.stop()
