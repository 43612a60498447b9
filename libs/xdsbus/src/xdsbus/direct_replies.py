"""Replies handed straight to a function, without nats-py's per-message machinery.

nats-py 2.16's reader hands every message it parses to `Client._process_msg`, a coroutine that counts
it, awaits a header parse, builds a `Msg` and queues it for the subscription's task, which awaits the
callback with it. For the JetStream acknowledgements of a watcher publishing a cold list (60k of them in
bench/cold_load.py, issue 16) that was about a tenth of watch-k8s's CPU. `route` lets the messages of one
subscription skip it: the connection's `_process_msg` becomes a dispatcher that counts a message of a
routed subscription as nats-py does and hands its subject and payload to the subscription's handler, a
plain function. Everything else goes the usual way, and so does a routed message carrying headers (a
status such as 503, no responders): to the subscription's callback, which must therefore handle what the
handler handles.

It replaces a private method on the instance, so it is used only on nats-py's own `Client` of the
release it was checked against (the pin in libs/xdsbus/pyproject.toml), as xdsbus.header_parsing;
`route` says whether it routed, and the callback alone serves anything else.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import nats.aio.client
from nats.aio.client import Client
from nats.aio.subscription import Subscription

log = logging.getLogger(__name__)

# The release whose `_process_msg` the dispatcher stands in for (what it counts, when it drops).
_CHECKED_RELEASE = "2.16."

Handler = Callable[[bytes, bytes], None]


class _Dispatcher:
    """The connection's `_process_msg` while some subscription is routed."""

    def __init__(self, nc: Client, process_msg: Callable[..., Awaitable[None]]) -> None:
        self.nc = nc
        self.process_msg = process_msg  # nats-py's own, bound
        self.handlers: dict[int, Handler] = {}

    async def __call__(self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: Any) -> None:
        handler = self.handlers.get(sid)
        sub = self.nc._subs.get(sid) if handler is not None and not headers else None
        if handler is None or sub is None:
            await self.process_msg(sid, subject, reply, data, headers)
            return
        sub._received += 1
        stats = self.nc.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            handler(subject, data)
        except Exception:
            # As nats-py does with a callback's failure: the reader goes on.
            log.exception("handling a message on %s failed", subject.decode(errors="replace"))


def usable(nc: Any) -> bool:
    """Whether `route` can route on `nc`: nats-py's own Client of the checked release, whose
    `_process_msg` is still the coroutine nats-py defines."""
    process_msg = Client.__dict__.get("_process_msg")
    return (
        type(nc) is Client
        and nats.aio.client.__version__.startswith(_CHECKED_RELEASE)
        and inspect.iscoroutinefunction(process_msg)
        and getattr(process_msg, "__module__", None) == "nats.aio.client"
    )


def route(nc: Any, subscription: Subscription, handler: Handler) -> bool:
    """Hand the messages of `subscription` (made on `nc`, unlimited) without headers to
    `handler(subject, payload)` as they are read; whether they will be (False: `usable(nc)` is not,
    and the subscription's callback gets them all)."""
    if not usable(nc) or subscription._max_msgs:
        return False
    dispatcher = nc.__dict__.get("_process_msg")
    if not isinstance(dispatcher, _Dispatcher):
        dispatcher = _Dispatcher(nc, nc._process_msg)
        nc._process_msg = dispatcher
    dispatcher.handlers[subscription._id] = handler
    return True


def unroute(nc: Any, subscription: Subscription) -> None:
    """Messages of `subscription` go to its callback again; nats-py's own `_process_msg` is back once
    no subscription is routed."""
    dispatcher = getattr(nc, "__dict__", {}).get("_process_msg")
    if not isinstance(dispatcher, _Dispatcher):
        return
    dispatcher.handlers.pop(subscription._id, None)
    if not dispatcher.handlers:
        del nc._process_msg
