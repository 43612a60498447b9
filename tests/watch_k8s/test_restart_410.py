"""Recovery after an API server restart (issue 14): the first change after the server returns reaches
the event log without a backoff step sized by the outage, also when the next watch gets 410."""

from __future__ import annotations

import logging
import time

from tests.fakes.kube_api import FakeKubeApi
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import StartWatcher, wait_synced
from tests.watch_k8s.test_k8s_watcher import endpoint_slice
from xdsbus.events import Op
from xdsbus_dev.harness.processes import eventually

log = logging.getLogger(__name__)

# Any backoff step of these settings lasts at least 10 s: the deadline below can only be met by the
# short probe while the server is down and the relist at once after the 410.
RETRY_BASE = 20.0
RETRY_CAP = 60.0
DEADLINE = 8.0


async def _refused(kube_loop: object) -> bool:
    return getattr(kube_loop, "refusals", 0) > 0


async def test_restart_with_410_relists_at_once(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    kube.create(endpoint_slice("web-a", "web"))
    run = await start_watcher(retry_base=RETRY_BASE, retry_cap=RETRY_CAP)
    await wait_synced(events, "EndpointSlice")
    loop = run.loop("EndpointSlice")
    assert loop.lists == 1

    await kube.stop()
    await eventually(lambda: _refused(loop), what="a refused reconnect while the API server is down")
    # Written while the watcher is away, then compacted: the restarted server no longer has the watch's
    # resourceVersion, so the next watch gets 410.
    kube.create(endpoint_slice("web-b", "web"))
    kube.compact()
    await kube.start()

    changed = endpoint_slice("web-a", "web")
    changed["endpoints"][0]["addresses"] = ["10.1.0.6"]
    kube.apply(changed)
    visible = time.monotonic()

    def arrived(lg: EventLog) -> bool:
        return any(
            e.body["endpoints"][0]["addresses"] == ["10.1.0.6"]
            for e in lg.of(Op.UPSERT, "EndpointSlice", "default/web-a")
        )

    await events.wait_for(arrived, "the change after the restart", timeout=DEADLINE)
    log.info("change after restart with 410 reached the event log in %.2fs", time.monotonic() - visible)
    assert loop.lists == 2  # relisted after the 410
    assert events.of(Op.UPSERT, "EndpointSlice", "default/web-b")
    assert events.of(Op.DELETE) == []
