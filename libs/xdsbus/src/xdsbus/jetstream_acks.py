"""JetStream publishes that do not wait: the message goes out now, its acknowledgement comes back later.

nats-py's `publish_async` loses the acknowledgements that carry an error (its reply handler raises
instead of failing the publish's future, so a full log, err 10077, looks like no answer at all), and
its `publish` waits for each answer. Here every publish of the process gets a reply subject under one
inbox of the connection (`_INBOX_<user>.<nuid>.<n>`, what each role may subscribe to, docs/design.md
§10), one subscription reads them all, and each answer completes the publish's future with the
`PubAck` fields or the error JetStream gave, as `js.publish` would raise it. A publish never answered
is for its caller to time out (cancelling the future forgets it). A publish (the watchers' events, the
builder's bodies and statuses) goes straight into the connection's buffer (xdsbus.buffered_publish)
when it can: nats-py's own publish costs more than the rest of it.

A batch whose acknowledgements are only awaited all together (the builder's bodies and statuses:
tens of thousands in a cold load, issue 16) goes through an `AckGroup`: one count and one future for the
batch instead of a future per publish and a gather over them, with the same outcome.
"""

from __future__ import annotations

import asyncio
import itertools

import msgspec
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import APIError, NoStreamResponseError

from xdsbus import buffered_publish, direct_replies

# Seconds a batch of publishes may wait for its acknowledgements (as the bus's JetStream requests).
ACK_TIMEOUT = 10.0
# The status header of a "no responders" answer: no stream holds the subject, or JetStream is down.
_NO_RESPONDERS = "503"
# Publishes awaiting an answer beyond which those given up on are swept out (xdsbus.publish_window keeps
# up to 512 in flight per watcher).
_SWEEP_AT = 4096


class _Error(msgspec.Struct):
    code: int = 0
    err_code: int | None = None
    description: str | None = None


class Ack(msgspec.Struct):
    """What JetStream answers to a publish: where the message is stored, or why it is not."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    error: _Error | None = None


_decode = msgspec.json.Decoder(Ack).decode


def _api_error(error: _Error) -> APIError:
    """The exception `js.publish` raises for this error (ServiceUnavailableError for a 503...)."""
    try:
        APIError.from_error(msgspec.structs.asdict(error))
    except APIError as exc:
        return exc
    return APIError(code=error.code, err_code=error.err_code, description=error.description)


class AckGroup:
    """Publishes whose acknowledgements are awaited together (`AckedPublisher.group`): `acked` returns
    once each is acknowledged, or raises the first error, as a gather over their futures would."""

    __slots__ = ("_answers", "_closed", "_done", "_error", "_publisher", "_sent")

    def __init__(self, publisher: AckedPublisher) -> None:
        self._publisher = publisher
        self._sent = 0
        self._answers = 0
        # The first error answered (or the publisher's close), raised by `acked`.
        self._error: BaseException | None = None
        # Made by `acked` while it waits: an answer completes it when the count is reached.
        self._done: asyncio.Future[None] | None = None
        # Once `acked` ended, or the publisher closed: later answers are ignored and swept out.
        self._closed = False

    def __len__(self) -> int:
        """How many publishes the group sent."""
        return self._sent

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str] | None = None) -> None:
        """Send one message to JetStream as `AckedPublisher.publish` does; `acked` awaits its answer.
        Not once the group was awaited."""
        if self._closed:
            raise RuntimeError("publish to an acknowledgement group already awaited")
        self._sent += 1
        try:
            await self._publisher._send(self, subject, payload, headers)
        except BaseException:
            self._sent -= 1
            raise

    async def acked(self, timeout: float = ACK_TIMEOUT) -> None:
        """Until every publish of the group is acknowledged. Raises the first error answered, or
        nats-py's TimeoutError once `timeout` passed; either way answers still to come are ignored."""
        try:
            if self._error is None and self._answers < self._sent:
                self._done = asyncio.get_running_loop().create_future()
                try:
                    async with asyncio.timeout(timeout):
                        await self._done
                except TimeoutError:
                    raise NatsTimeoutError from None
            if self._error is not None:
                raise self._error
        finally:
            self._closed = True
            self._done = None

    def done(self) -> bool:
        """Whether answers to the group are still awaited (as `Future.done` for the publisher's sweep)."""
        return self._closed

    def cancel(self) -> None:
        """The publisher closed: what awaits the group is cancelled, as single publishes' futures are."""
        if self._error is None:
            self._error = asyncio.CancelledError()
        if self._done is not None:
            self._done.cancel()
        self._closed = True

    def _answer(self, answer: Ack | BaseException) -> None:
        if isinstance(answer, BaseException):
            self._answer_error(answer)
            return
        self._answers += 1
        done = self._done
        if done is not None and self._answers >= self._sent and not done.done():
            done.set_result(None)

    def _answer_error(self, error: BaseException) -> None:
        if self._error is None:
            self._error = error
        done = self._done
        if done is not None and not done.done():
            done.set_exception(self._error)


class AckedPublisher:
    """Sends JetStream publishes on `nc` and hands out the futures of their acknowledgements."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._inbox = ""
        self._subscription: Subscription | None = None
        # The future of each publish awaiting its answer, or the group it belongs to.
        self._waiting: dict[str, asyncio.Future[Ack] | AckGroup] = {}
        self._tokens = itertools.count(1)
        # An answered publish leaves `_waiting` when its answer is read; one its caller gave up on (timed
        # out, cancelled) when `_waiting` next holds this many, in one sweep: cheaper than a callback
        # on every future.
        self._sweep_at = _SWEEP_AT

    def _sweep(self) -> None:
        self._waiting = {token: ack for token, ack in self._waiting.items() if not ack.done()}
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._waiting))

    def group(self) -> AckGroup:
        """An empty group of publishes whose acknowledgements are awaited together."""
        return AckGroup(self)

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Ack]:
        """Send one message to JetStream; the future of its acknowledgement."""
        ack: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        try:
            await self._send(ack, subject, payload, headers)
        except BaseException:
            ack.cancel()
            raise
        return ack

    async def _send(
        self,
        waiter: asyncio.Future[Ack] | AckGroup,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
    ) -> None:
        """Send one message whose answer goes to `waiter`."""
        if self._subscription is None:
            self._inbox = self.nc.new_inbox()
            self._subscription = await self.nc.subscribe(f"{self._inbox}.*", cb=self._answered)
            # Answers without headers (every acknowledgement) skip nats-py's per-message machinery.
            direct_replies.route(self.nc, self._subscription, self._answered_directly)
        if self._buffered(waiter, subject, payload, headers):
            return
        token = self._expect(waiter)
        try:
            await self.nc.publish(subject, payload, reply=f"{self._inbox}.{token}", headers=headers)
        except BaseException:
            self._waiting.pop(token, None)
            raise

    def publish_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Ack] | None:
        """`publish` when it needs no waiting (the acknowledgements' subscription is made, the message
        can go straight into the connection's buffer); None when only `publish` can send it."""
        ack: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        try:
            sent = self._buffered(ack, subject, payload, headers)
        except BaseException:
            ack.cancel()
            raise
        return ack if sent else None

    def _buffered(
        self,
        waiter: asyncio.Future[Ack] | AckGroup,
        subject: str,
        payload: bytes,
        headers: dict[str, str] | None,
    ) -> bool:
        """Put the message into the connection's buffer (xdsbus.buffered_publish), its answer going to
        `waiter`, when it can go there now; whether it went."""
        if self._subscription is None or not buffered_publish.usable(self.nc):
            return False
        token = self._expect(waiter)
        try:
            buffered_publish.append(self.nc, subject, f"{self._inbox}.{token}", payload, headers)
        except BaseException:
            # Not sent: nothing will answer it.
            self._waiting.pop(token, None)
            raise
        return True

    def _expect(self, waiter: asyncio.Future[Ack] | AckGroup) -> str:
        """A token for the next publish's reply subject; its answer goes to `waiter`."""
        if len(self._waiting) >= self._sweep_at:
            self._sweep()
        token = str(next(self._tokens))
        self._waiting[token] = waiter
        return token

    async def close(self) -> None:
        """Stop reading answers; every publish still waiting is cancelled."""
        if self._subscription is not None:
            subscription, self._subscription = self._subscription, None
            direct_replies.unroute(self.nc, subscription)
            await subscription.unsubscribe()
        waiting, self._waiting = self._waiting, {}
        for ack in waiting.values():
            ack.cancel()

    async def _answered(self, msg: Msg) -> None:
        """An answer through the subscription's callback: one with headers, or any answer when the
        connection's replies are not routed (xdsbus.direct_replies)."""
        no_responders = msg.headers is not None and msg.headers.get("Status") == _NO_RESPONDERS
        self._deliver(msg.subject.rpartition(".")[2], msg.data, no_responders)

    def _answered_directly(self, subject: bytes, data: bytes) -> None:
        """An answer without headers, as the connection reads it (xdsbus.direct_replies)."""
        self._deliver(subject[subject.rfind(b".") + 1 :].decode(), data)

    def _deliver(self, token: str, data: bytes, no_responders: bool = False) -> None:
        waiter = self._waiting.pop(token, None)
        if waiter is None or waiter.done():
            return  # answered after its publish timed out (and was sent again)
        answer = NoStreamResponseError() if no_responders else _answer_in(data)
        if isinstance(waiter, AckGroup):
            waiter._answer(answer)
        elif isinstance(answer, Ack):
            waiter.set_result(answer)
        else:
            waiter.set_exception(answer)


def _answer_in(data: bytes) -> Ack | BaseException:
    """The acknowledgement in an answer's payload, or the error `js.publish` would raise for it."""
    try:
        answer = _decode(data)
    except msgspec.DecodeError as exc:
        return APIError(description=f"unreadable acknowledgement: {exc}")
    if answer.error is not None:
        return _api_error(answer.error)
    return answer
