"""The recovery rules of one list+watch loop, against a scripted API (issue 14): which failures wait
how long before the next request. The delays are read as the loop computes them, never timed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import Any

from xdsbus_watch_k8s.api import Gone
from xdsbus_watch_k8s.list_watch import ListWatch
from xdsbus_watch_k8s.resources import ENDPOINT_SLICE, Feed

# Any backoff step lasts at least RETRY_BASE / 2 with these.
RETRY_BASE = 20.0
PROBE_CAP = 1.0


class ScriptedApi:
    """Answers lists from `lists` and watches from `watches` in order: an exception is raised, anything
    else is an empty answer; the calls are recorded."""

    def __init__(
        self, lists: Sequence[BaseException | None], watches: Sequence[BaseException | None]
    ) -> None:
        self.lists = list(lists)
        self.watches = list(watches)
        self.calls: list[str] = []

    async def get(self, path: str, params: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
        self.calls.append("list")
        if self.lists and (failure := self.lists.pop(0)) is not None:
            raise failure
        return {"items": [], "metadata": {"resourceVersion": str(len(self.calls))}}

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, params: Sequence[tuple[str, str]], read_timeout: float
    ) -> AsyncIterator[asyncio.StreamReader]:
        self.calls.append("watch")
        if self.watches and (failure := self.watches.pop(0)) is not None:
            raise failure
        body = asyncio.StreamReader()
        body.feed_eof()
        yield body


class NullSink:
    async def page(self, feed: Feed, api_version: str, items: list[dict[str, Any]], first: bool) -> None:
        return None

    async def replace(self, feed: Feed, api_version: str) -> None:
        return None

    async def apply(self, feed: Feed, api_version: str, event_type: str, obj: dict[str, Any]) -> None:
        return None

    def answered(self) -> None:
        return None


async def run_until_pauses(api: ScriptedApi, count: int) -> list[float]:
    """Run a loop over `api` until it has chosen `count` delays; returns them."""
    stop = asyncio.Event()
    loop = ListWatch(
        api,  # type: ignore[arg-type]  # the two methods the loop uses
        Feed(ENDPOINT_SLICE),
        NullSink(),
        stop,
        retry_base=RETRY_BASE,
        retry_cap=60.0,
        probe_cap=PROBE_CAP,
    )
    pauses: list[float] = []

    async def pause(delay: float) -> None:
        pauses.append(delay)
        if len(pauses) >= count:
            stop.set()

    loop._pause = pause  # type: ignore[method-assign]
    await asyncio.wait_for(loop.run(), timeout=10)
    return pauses


def gone() -> Gone:
    return Gone(410, "Expired", "too old resource version")


async def test_a_watch_answered_410_relists_at_once_and_a_second_410_backs_off() -> None:
    api = ScriptedApi(lists=[], watches=[gone(), gone()])
    pauses = await run_until_pauses(api, 1)
    # No delay between the first 410 and the relist; the 410 that follows the relist at once waits.
    assert api.calls == ["list", "watch", "list", "watch"]
    assert len(pauses) == 1 and pauses[0] >= RETRY_BASE / 2


async def test_a_410_of_the_list_backs_off() -> None:
    api = ScriptedApi(lists=[None, gone()], watches=[gone()])
    pauses = await run_until_pauses(api, 1)
    assert api.calls == ["list", "watch", "list"]
    assert pauses[0] >= RETRY_BASE / 2


async def test_refused_connections_are_probed_within_the_cap_and_other_failures_back_off() -> None:
    refused = [ConnectionRefusedError(111, "refused") for _ in range(5)]
    pauses = await run_until_pauses(ScriptedApi(lists=refused, watches=[]), 5)
    assert all(delay <= PROBE_CAP for delay in pauses)

    pauses = await run_until_pauses(ScriptedApi(lists=[OSError("reset")], watches=[]), 1)
    assert pauses[0] >= RETRY_BASE / 2
