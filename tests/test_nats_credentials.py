"""The other credentials of docs/design.md §10 against a real nats-server: an NKey seed file, and TLS
with a client certificate (mTLS)."""

from __future__ import annotations

import os
from pathlib import Path

import nats
import nkeys
import pytest

from xdsbus.bus import BusSettings, connect
from xdsbus.nats_options import NatsOptions, NatsOptionsError
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.processes import NatsServer, Service, free_port, tool, wait_for_port
from xdsbus_dev.nats_users import local_roles


async def test_an_nkey_seed_file_connects_with_its_roles_permissions(tmp_path: Path) -> None:
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    public = nkeys.from_seed(bytearray(seed)).public_key.decode()
    seed_file = tmp_path / "edge.nk"
    seed_file.write_bytes(seed)
    server = NatsServer(tmp_path / "nats", users=local_roles("e2e"), nkeys={"edge": public})
    server.start()
    try:
        # With an NKey the client cannot tell its user name: it names the role's inboxes itself.
        options = NatsOptions(servers=(server.url,), nkey_file=seed_file, inbox_prefix="_INBOX_edge")
        # The edge's grants open every handle of the layout (bus.open_bus) ...
        bus = await connect(BusSettings(url=server.url, nats=options), name="nkey-edge", attempts=1)
        try:
            assert (await bus.js.stream_info("XDSBUS_LEDGER")).config.name == "XDSBUS_LEDGER"
        finally:
            await bus.close()
        # ... and the password of the same role no longer exists.
        with pytest.raises(NatsOptionsError):
            NatsOptions(servers=(server.url,), user="edge", password_file=tmp_path / "none").connect_kwargs()
    finally:
        server.stop()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


async def test_tls_with_a_client_certificate(tmp_path: Path) -> None:
    ca, other = TestCA(), TestCA("another CA")
    server_pair = ca.issue("localhost")
    client_pair = ca.issue("xdsbus-edge", client=True)
    stranger = other.issue("xdsbus-edge", client=True)
    ca_file = _write(tmp_path / "ca.pem", ca.cert_pem)
    port = free_port()
    config = tmp_path / "nats.conf"
    config.write_text(
        "tls {\n"
        f'  cert_file: "{_write(tmp_path / "server.pem", server_pair.cert_pem)}"\n'
        f'  key_file: "{_write(tmp_path / "server.key", server_pair.key_pem)}"\n'
        f'  ca_file: "{ca_file}"\n'
        "  verify: true\n"
        "}\n"
    )
    server = Service(
        [tool("nats-server"), "-c", str(config), "-a", "127.0.0.1", "-p", str(port)], tmp_path / "nats.log"
    ).start()
    try:
        wait_for_port(port)
        url = f"tls://localhost:{port}"
        options = NatsOptions(
            servers=(url,),
            ca_file=ca_file,
            cert_file=_write(tmp_path / "client.pem", client_pair.cert_pem),
            key_file=_write(tmp_path / "client.key", client_pair.key_pem),
        )
        nc = await nats.connect(**options.connect_kwargs(), connect_timeout=2, allow_reconnect=False)
        try:
            await nc.flush(timeout=2)
            assert nc.is_connected
        finally:
            await nc.close()
        # A certificate of another CA, or none, is refused.
        for cert_file, key_file in (
            (
                _write(tmp_path / "stranger.pem", stranger.cert_pem),
                _write(tmp_path / "stranger.key", stranger.key_pem),
            ),
            (None, None),
        ):
            refused = NatsOptions(servers=(url,), ca_file=ca_file, cert_file=cert_file, key_file=key_file)
            with pytest.raises(Exception):  # noqa: B017 - nats-py raises what the TLS layer raised
                client = await nats.connect(
                    **refused.connect_kwargs(),
                    connect_timeout=2,
                    allow_reconnect=False,
                    max_reconnect_attempts=0,
                )
                await client.flush(timeout=2)
    finally:
        server.terminate()
