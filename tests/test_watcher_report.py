"""A watcher's report on itself (xdsbus.watcher_report) through a real nats-server: while it holds the
lease it says who publishes and since when, counts its resyncs, turns to `rejected` with the error while
its source fails and back once the source answers, and says it stopped when it stops."""

from __future__ import annotations

import asyncio
import time

from xdsbus import status_store
from xdsbus.bus import Bus
from xdsbus.contract.status import ObjectStatus
from xdsbus.watcher import Watcher
from xdsbus.watcher_report import STATE_KEY, WATCHER_KIND
from xdsbus_dev.harness.processes import eventually

SOURCE = "test/reported"


class _FailingOnce(Watcher):
    """Resyncs, fails, then (once the test allows it) resyncs again and follows."""

    def __init__(self, bus: Bus) -> None:
        super().__init__(bus, SOURCE, instance_id="replica-a", lease_ttl=1.5)
        self.calls = 0
        self.may_return = asyncio.Event()

    async def watch(self) -> None:
        self.calls += 1
        if self.calls > 1:
            await self.may_return.wait()
        await self.resync({"Service": {"default/a": {"n": self.calls}}})
        if self.calls == 1:
            raise RuntimeError("registry said no")
        await self.stop.wait()


async def _report(bus: Bus) -> ObjectStatus | None:
    return await status_store.read(bus, WATCHER_KIND, SOURCE, STATE_KEY)


async def test_a_watcher_reports_who_publishes_its_resyncs_failures_and_stop(bus: Bus) -> None:
    started = time.time()
    watcher = _FailingOnce(bus)
    running = asyncio.create_task(watcher.run())
    try:

        async def failing() -> ObjectStatus | None:
            report = await _report(bus)
            return report if report is not None and report.state == "rejected" else None

        report = await eventually(failing, timeout=10, what="a report of the failing source")
        assert report.watcher is not None
        assert report.reason == "source failing: registry said no; its last known state stays"
        assert report.watcher.holder == "replica-a" and report.watcher.leading
        assert report.watcher.term > 0 and report.watcher.leading_since >= round(started, 3) - 0.001
        assert report.watcher.last_error == "registry said no"
        assert report.watcher.resyncs == 1

        watcher.may_return.set()

        async def recovered() -> ObjectStatus | None:
            report = await _report(bus)
            if report is None or report.watcher is None or report.watcher.resyncs < 2:
                return None
            return report

        report = await eventually(recovered, timeout=10, what="a report after the source answered again")
        assert report.state == "accepted" and report.reason == ""
        assert report.watcher is not None
        # The last error stays on record, older than the source's last answer.
        assert report.watcher.last_error == "registry said no"
        assert report.watcher.last_answer >= report.watcher.last_error_at
        assert report.watcher.last_resync >= report.watcher.last_error_at
        # Two resyncs of one object: a sync_begin, the upsert and a sync_end each.
        assert report.watcher.events_published == 2 * 3
    finally:
        watcher.stop.set()
        await asyncio.wait_for(running, timeout=10)

    stopped = await _report(bus)
    assert stopped is not None and stopped.watcher is not None and not stopped.watcher.leading
