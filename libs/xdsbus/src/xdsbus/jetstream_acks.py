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

from xdsbus import buffered_publish

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


class AckedPublisher:
    """Sends JetStream publishes on `nc` and hands out the futures of their acknowledgements."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self._inbox = ""
        self._subscription: Subscription | None = None
        self._waiting: dict[str, asyncio.Future[Ack]] = {}
        self._tokens = itertools.count(1)
        # An answered publish leaves `_waiting` when its answer is read; one its caller gave up on (timed
        # out, cancelled) when `_waiting` next holds this many, in one sweep: cheaper than a callback
        # on every future.
        self._sweep_at = _SWEEP_AT

    def _sweep(self) -> None:
        self._waiting = {token: ack for token, ack in self._waiting.items() if not ack.done()}
        self._sweep_at = max(_SWEEP_AT, 2 * len(self._waiting))

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Ack]:
        """Send one message to JetStream; the future of its acknowledgement."""
        if self._subscription is None:
            self._inbox = self.nc.new_inbox()
            self._subscription = await self.nc.subscribe(f"{self._inbox}.*", cb=self._answered)
        ack = self.publish_now(subject, payload, headers)
        if ack is not None:
            return ack
        token, ack = self._expect()
        try:
            await self.nc.publish(subject, payload, reply=f"{self._inbox}.{token}", headers=headers)
        except BaseException:
            self._forget(token, ack)
            raise
        return ack

    def publish_now(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[Ack] | None:
        """`publish` when it needs no waiting (the acknowledgements' subscription is made, the message
        can go straight into the connection's buffer); None when only `publish` can send it."""
        if self._subscription is None or not buffered_publish.usable(self.nc):
            return None
        token, ack = self._expect()
        try:
            buffered_publish.append(self.nc, subject, f"{self._inbox}.{token}", payload, headers)
        except BaseException:
            self._forget(token, ack)
            raise
        return ack

    def _expect(self) -> tuple[str, asyncio.Future[Ack]]:
        """A token for the next publish's reply subject, and the future its answer completes."""
        if len(self._waiting) >= self._sweep_at:
            self._sweep()
        token = str(next(self._tokens))
        ack: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        self._waiting[token] = ack
        return token, ack

    def _forget(self, token: str, ack: asyncio.Future[Ack]) -> None:
        """A publish that was not sent: nothing will answer it."""
        self._waiting.pop(token, None)
        ack.cancel()

    async def close(self) -> None:
        """Stop reading answers; every publish still waiting is cancelled."""
        if self._subscription is not None:
            await self._subscription.unsubscribe()
            self._subscription = None
        waiting, self._waiting = self._waiting, {}
        for ack in waiting.values():
            ack.cancel()

    async def _answered(self, msg: Msg) -> None:
        ack = self._waiting.pop(msg.subject.rpartition(".")[2], None)
        if ack is None or ack.done():
            return  # answered after its publish timed out (and was sent again)
        if msg.headers and msg.headers.get("Status") == _NO_RESPONDERS:
            ack.set_exception(NoStreamResponseError())
            return
        try:
            answer = _decode(msg.data)
        except msgspec.DecodeError as exc:
            ack.set_exception(APIError(description=f"unreadable acknowledgement: {exc}"))
            return
        if answer.error is not None:
            ack.set_exception(_api_error(answer.error))
        else:
            ack.set_result(answer)


async def all_acked(pending: list[asyncio.Future[Ack]], timeout: float = ACK_TIMEOUT) -> None:
    """Until every publish of `pending` is acknowledged. Raises the first error, or nats-py's
    TimeoutError once `timeout` passed (an answer lost with a connection never comes); either way the
    publishes still waiting are cancelled, so nothing waits for them any more."""
    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*pending)
    except TimeoutError:
        raise NatsTimeoutError from None
    finally:
        for ack in pending:
            ack.cancel()
