"""Clients made for a cluster (issue 14): keepalive pings notice a half-open link and the client
reconnects; the connection state and its log lines follow (docs/design.md §9)."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from xdsbus.bus import BusSettings, connect
from xdsbus.nats_options import (
    ConnectionState,
    ErrorReporter,
    JitteredReconnect,
    NatsOptions,
    NatsOptionsError,
)
from xdsbus_dev.harness.processes import NatsServer, eventually
from xdsbus_dev.harness.tcp_proxy import TcpProxy


def test_keepalive_settings_come_from_the_environment() -> None:
    env = {"XDSBUS_NATS_PING_INTERVAL": "0.5", "XDSBUS_NATS_MAX_PINGS_OUT": "2"}
    kwargs = NatsOptions.from_env("nats://n:4222", environ=env).keepalive_kwargs()
    assert kwargs["ping_interval"] == 0.5
    assert kwargs["max_outstanding_pings"] == 2
    defaults = NatsOptions().keepalive_kwargs()
    assert defaults["ping_interval"] == 10.0
    with pytest.raises(NatsOptionsError, match="XDSBUS_NATS_PING_INTERVAL"):
        NatsOptions.from_env("nats://n:4222", environ={"XDSBUS_NATS_PING_INTERVAL": "soon"})


@dataclasses.dataclass
class _Server:
    reconnects: int


def test_reconnects_go_to_the_least_tried_server_after_a_jittered_delay() -> None:
    handler = JitteredReconnect(cap=2.0, base=0.1)
    servers = [_Server(3), _Server(1), _Server(1)]
    for _ in range(50):
        chosen, delay = handler(servers, {})  # type: ignore[arg-type]
        assert chosen.reconnects == 1
        assert 0 <= delay <= 0.2
    _, delay = handler([_Server(30)], {})  # type: ignore[arg-type]
    assert delay <= 2.0


def test_connection_state_counts_time_disconnected_only_while_down() -> None:
    state = ConnectionState(connected=True)
    assert state.disconnected_for() == 0.0
    state.mark(False)
    since = state.since
    state.mark(False)
    assert state.since == since
    assert state.disconnected_for() >= 0.0
    state.mark(True)
    assert state.disconnected_for() == 0.0


@pytest.mark.slow
async def test_a_half_open_link_is_noticed_by_pings_and_the_client_reconnects(
    nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="xdsbus.nats_options")
    with TcpProxy(nats_server.port) as proxy:
        options = NatsOptions(servers=(proxy.url,), ping_interval=0.3, max_pings_out=2, reconnect_wait=0.5)
        bus = await connect(BusSettings(url=proxy.url, nats=options), name="half-open-test")
        try:
            assert bus.connection.connected
            proxy.stall()

            async def lost() -> bool:
                return not bus.connection.connected

            await eventually(lost, timeout=15, what="the stalled link to be noticed")
            assert "half-open-test: disconnected from NATS at nats://127.0.0.1" in caplog.text
            proxy.resume()

            async def back() -> bool:
                if not bus.connection.connected:
                    return False
                await bus.nc.flush(timeout=2)
                return True

            await eventually(back, timeout=15, what="the client to reconnect")
            assert bus.connection.reconnects == 1
            assert "half-open-test: reconnected to NATS" in caplog.text
            assert proxy.connections >= 2
            await bus.status.put("after-half-open", b"x")
        finally:
            await bus.close()


async def test_disconnect_and_reconnect_lines_redact_the_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="xdsbus.nats_options")
    options = NatsOptions(servers=("nats://edge:s3cret@n1:4222", "nats://n2:4222"))
    reporter = ErrorReporter("edge", options)
    await reporter.connected()
    await reporter.disconnected()
    await reporter.disconnected()  # nats-py calls it again while closing: no second line
    await reporter.reconnected()
    assert caplog.text.count("disconnected from NATS") == 1
    assert "nats://edge:***@n1:4222,nats://n2:4222" in caplog.text
    assert "s3cret" not in caplog.text
    assert reporter.state.connected and reporter.state.reconnects == 1 and reporter.state.disconnects == 1
