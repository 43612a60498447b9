"""RFC 6455 websockets for the echo backend: the opening handshake of `GET /ws` (HTTP/1.1 Upgrade) and a
server that echoes every text and binary message back unchanged.

Messages may arrive fragmented (continuation frames) and interleaved with control frames: a ping is
answered with a pong carrying its payload, a close with a close carrying its status code, after which the
connection ends. Protocol violations fail the connection with a close frame naming them (RFC 6455 §7.1.7).
No extensions (permessage-deflate is not offered) and no subprotocols are negotiated.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

# Appended to the client's key before hashing, so that only a websocket server can answer (§1.3).
_ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
VERSION = "13"
MAX_MESSAGE = 16 * 1024 * 1024

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA_OPCODES = (CONTINUATION, TEXT, BINARY)
_CONTROL_OPCODES = (CLOSE, PING, PONG)
_MAX_CONTROL_PAYLOAD = 125

PROTOCOL_ERROR = 1002
INVALID_PAYLOAD = 1007
MESSAGE_TOO_BIG = 1009
# Close codes a peer may send (§7.4.1, §7.4.2): 1004-1006 and 1015 are reserved for other uses.
_SENDABLE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


class HandshakeError(Exception):
    """The request asks for a websocket but the opening handshake is invalid: answer 400 with `headers`."""

    def __init__(self, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(reason)
        self.headers = list(headers)


class ProtocolError(Exception):
    """The peer broke RFC 6455: the connection fails with a close frame carrying `code`."""

    def __init__(self, reason: str, code: int = PROTOCOL_ERROR) -> None:
        super().__init__(reason)
        self.code = code


def _tokens(headers: Sequence[tuple[str, str]], name: str) -> set[str]:
    lower = name.lower()
    return {t.strip().lower() for k, v in headers if k.lower() == lower for t in v.split(",")}


def _value(headers: Sequence[tuple[str, str]], name: str) -> str | None:
    lower = name.lower()
    return next((v for k, v in headers if k.lower() == lower), None)


def wants_upgrade(headers: Sequence[tuple[str, str]]) -> bool:
    """Whether a request asks to become a websocket (`Upgrade: websocket`)."""
    return "websocket" in _tokens(headers, "upgrade")


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept answering a Sec-WebSocket-Key (§4.2.2)."""
    # SHA-1 is what RFC 6455 prescribes here: a proof of understanding the protocol, not security.
    digest = hashlib.sha1((key + _ACCEPT_GUID).encode("ascii")).digest()
    return base64.b64encode(digest).decode("ascii")


def handshake(method: str, proto: str, headers: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The headers of the 101 answering a websocket opening handshake (§4.2.1); HandshakeError when the
    request is not a valid one."""
    if method != "GET":
        raise HandshakeError(f"a websocket handshake must be a GET, not {method}")
    if proto != "HTTP/1.1":
        raise HandshakeError(f"a websocket handshake needs HTTP/1.1, not {proto}")
    if "upgrade" not in _tokens(headers, "connection"):
        raise HandshakeError("a websocket handshake needs `Connection: Upgrade`")
    version = _value(headers, "sec-websocket-version")
    if version != VERSION:
        # §4.4: name the version this server speaks so that the client can retry with it.
        raise HandshakeError(
            f"unsupported Sec-WebSocket-Version {version!r} (supported: {VERSION})",
            [("Sec-WebSocket-Version", VERSION)],
        )
    key = (_value(headers, "sec-websocket-key") or "").strip()
    try:
        nonce = base64.b64decode(key, validate=True)
    except binascii.Error:
        nonce = b""
    if len(nonce) != 16:
        raise HandshakeError(f"Sec-WebSocket-Key {key!r} is not a base64-encoded 16-byte nonce")
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Accept", accept_key(key))]


def _unmask(payload: bytes, mask: bytes) -> bytes:
    # One big-integer XOR instead of a Python loop over every byte: large messages stay cheap.
    if not payload:
        return payload
    size = len(payload)
    keystream = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(keystream, "big")).to_bytes(size, "big")


def encode_frame(opcode: int, payload: bytes = b"") -> bytes:
    """A whole (FIN) unmasked frame, as a server sends it (§5.1: servers never mask)."""
    size = len(payload)
    if size < 126:
        head = bytes([0x80 | opcode, size])
    elif size < 1 << 16:
        head = bytes([0x80 | opcode, 126]) + size.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 127]) + size.to_bytes(8, "big")
    return head + payload


@dataclass(frozen=True)
class Frame:
    """One frame as read from a client, its payload unmasked."""

    fin: bool
    opcode: int
    payload: bytes


async def read_frame(reader: asyncio.StreamReader, max_payload: int = MAX_MESSAGE) -> Frame:
    """One frame from a client, unmasked; ProtocolError when it breaks §5.2 or is a data frame of more than
    `max_payload` bytes (asyncio.IncompleteReadError when the connection ends inside it)."""
    first, second = await reader.readexactly(2)
    if first & 0x70:
        raise ProtocolError("reserved bits set without a negotiated extension")
    opcode = first & 0x0F
    fin = bool(first & 0x80)
    if opcode not in _DATA_OPCODES + _CONTROL_OPCODES:
        raise ProtocolError(f"unknown opcode {opcode:#x}")
    if not second & 0x80:
        raise ProtocolError("client frames must be masked")
    size = second & 0x7F
    if size == 126:
        size = int.from_bytes(await reader.readexactly(2), "big")
    elif size == 127:
        size = int.from_bytes(await reader.readexactly(8), "big")
        if size >> 63:
            raise ProtocolError("64-bit length with the most significant bit set")
    if opcode in _CONTROL_OPCODES and (not fin or size > _MAX_CONTROL_PAYLOAD):
        raise ProtocolError("control frames must be whole and at most 125 bytes")
    if opcode in _DATA_OPCODES and size > max_payload:
        raise ProtocolError(f"message of more than {max_payload} bytes", MESSAGE_TOO_BIG)
    mask = await reader.readexactly(4)
    return Frame(fin, opcode, _unmask(await reader.readexactly(size), mask))


def _close_reply(payload: bytes) -> bytes:
    """The payload of the close answering a client's close: its status code, or a protocol error."""
    if not payload:
        return b""
    code = int.from_bytes(payload[:2], "big")
    if len(payload) == 1 or not (code in _SENDABLE_CODES or 3000 <= code <= 4999):
        return PROTOCOL_ERROR.to_bytes(2, "big")
    try:
        payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        return INVALID_PAYLOAD.to_bytes(2, "big")
    return payload[:2]


async def echo_messages(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, max_message: int = MAX_MESSAGE
) -> None:
    """After the 101: echo every message until the client closes (or breaks the protocol, or goes away)."""
    opcode = 0  # of the message being assembled from fragments; 0 between messages
    fragments: list[bytes] = []
    size = 0
    try:
        while True:
            frame = await read_frame(reader, max_message - size)
            if frame.opcode == PING:
                writer.write(encode_frame(PONG, frame.payload))
            elif frame.opcode == CLOSE:
                writer.write(encode_frame(CLOSE, _close_reply(frame.payload)))
                await writer.drain()
                return
            elif frame.opcode == PONG:
                pass  # unsolicited pongs are allowed and need no answer (§5.5.3)
            elif frame.opcode == CONTINUATION and not opcode:
                raise ProtocolError("continuation frame outside a fragmented message")
            elif frame.opcode != CONTINUATION and opcode:
                raise ProtocolError("new message inside a fragmented message")
            else:
                opcode = opcode or frame.opcode
                fragments.append(frame.payload)
                size += len(frame.payload)
                if frame.fin:
                    message = b"".join(fragments)
                    if opcode == TEXT:
                        _check_utf8(message)
                    writer.write(encode_frame(opcode, message))
                    opcode, fragments, size = 0, [], 0
            await writer.drain()
    except ProtocolError as exc:
        reason = str(exc).encode("utf-8")[: _MAX_CONTROL_PAYLOAD - 2]
        writer.write(encode_frame(CLOSE, exc.code.to_bytes(2, "big") + reason))
        await writer.drain()
    except asyncio.IncompleteReadError:
        pass  # the client went away without a close frame


def _check_utf8(message: bytes) -> None:
    try:
        message.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError("text message is not UTF-8", INVALID_PAYLOAD) from exc
