"""Running a service's main coroutine with a clean stop on SIGTERM/SIGINT, and its health port; SIGUSR1
logs what every task of the service is waiting for."""

from __future__ import annotations

import asyncio
import io
import logging
import signal
from collections.abc import Awaitable, Callable

from xdsbus.health import Health, Listen, serving

log = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# `kill -USR1 <pid>` logs every asyncio task's stack: where a service that looks stuck is waiting.
DUMP_SIGNAL = signal.SIGUSR1


def dump_tasks() -> None:
    """Log the stack of every task of the running loop, one warning each, by task name."""
    tasks = sorted(asyncio.all_tasks(), key=lambda task: task.get_name())
    log.warning("%d tasks (%s)", len(tasks), DUMP_SIGNAL.name)
    for task in tasks:
        stack = io.StringIO()
        task.print_stack(file=stack)
        log.warning("task %s:\n%s", task.get_name(), stack.getvalue().rstrip())


def run_service(
    main: Callable[[asyncio.Event], Awaitable[None]],
    *,
    health: Health | None = None,
    http_listen: Listen | None = None,
) -> int:
    """Run `main(stop)` in a fresh event loop and return the process exit status.

    The first SIGTERM or SIGINT sets `stop`; `main` is expected to finish its work in hand and return.
    A second signal cancels `main` (an operator who asks twice does not want to wait). Returns 0 when
    `main` returns, 1 when it raised or had to be cancelled.

    With `health`, /metrics, /ready and /live are served on `http_listen` from before `main` connects
    (not ready until it sets `health.bus`) until it has returned."""

    async def runner() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        task = asyncio.current_task()

        def on_signal(name: str) -> None:
            if stop.is_set():
                log.warning("%s received again: cancelling", name)
                if task is not None:
                    task.cancel()
            else:
                log.info("%s received: stopping", name)
                stop.set()

        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, on_signal, sig.name)
        loop.add_signal_handler(DUMP_SIGNAL, dump_tasks)
        try:
            if health is None:
                await main(stop)
            else:
                async with serving(health, http_listen):
                    await main(stop)
        finally:
            for sig in (*STOP_SIGNALS, DUMP_SIGNAL):
                loop.remove_signal_handler(sig)

    try:
        asyncio.run(runner())
    except asyncio.CancelledError:
        log.error("stopped before shutdown completed")
        return 1
    except Exception:
        log.exception("service failed")
        return 1
    return 0
