"""Connections from `xdsbus.bus.connect` parse received headers with xdsbus.header_parsing, and a
message arrives through a real nats-server with the headers nats-py's own parser would give."""

from __future__ import annotations

import asyncio
import json

from nats.aio.client import Client

from xdsbus import header_parsing
from xdsbus.bus import Bus
from xdsbus_dev.harness.processes import NatsServer

# What a direct get carries, then lines a careless or hostile publisher could send.
BLOCKS = [
    b"Nats-Stream: KV_r\r\nNats-Subject: $KV.r.k\r\nNats-Sequence: 12\r\n"
    b"Nats-Time-Stamp: 2026-12-07T23:48:07Z\r\nNats-Num-Pending: 3\r\n\r\n",
    b"no colon\r\n: empty name\r\n in side : v\r\n\x1cName: v\r\nn\xc3\xa9: v\r\n"
    b"v: \xff caf\xc3\xa9 \r\n\r\n",
]


async def _publish_raw(server: NatsServer, subject: str, block: bytes) -> None:
    """Send `block` as the headers of a message on `subject` byte for byte, as nats-py could not."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    try:
        await reader.readline()  # INFO
        header = b"NATS/1.0\r\n" + block
        writer.write(
            b"CONNECT " + json.dumps({"verbose": False, "headers": True}).encode() + b"\r\n"
            b"HPUB "
            + subject.encode()
            + b" %d %d\r\n" % (len(header), len(header) + 1)
            + header
            + b"x\r\nPING\r\n"
        )
        assert await asyncio.wait_for(reader.readline(), 5) == b"PONG\r\n"
    finally:
        writer.close()
        await writer.wait_closed()


async def test_a_message_arrives_with_the_headers_nats_py_would_parse(
    bus: Bus, nats_server: NatsServer
) -> None:
    assert bus.nc._parse_header_lines is header_parsing.parse_header_lines
    subscription = await bus.nc.subscribe("headers.test")
    await bus.nc.flush()
    for block in BLOCKS:
        await _publish_raw(nats_server, "headers.test", block)
        msg = await subscription.next_msg(timeout=5)
        assert msg.data == b"x"
        assert msg.headers == Client._parse_header_lines(block)
    assert msg.headers == {"": "empty name", "v": "\ufffd café"}
    await subscription.unsubscribe()


def test_only_nats_py_s_own_client_gets_the_parser() -> None:
    class Other(Client):
        pass

    assert header_parsing.usable(Client()) and not header_parsing.usable(Other())
    assert not header_parsing.install(object())
