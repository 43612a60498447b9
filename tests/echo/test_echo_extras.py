"""The echo backend's extras for end-to-end tests: HTTPS serving and the log of requests it read."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from xdsbus_dev.echo import EchoIdentity, EchoServer, server_context
from xdsbus_dev.harness import http
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.processes import free_port


@pytest.fixture
def ca() -> TestCA:
    return TestCA()


def _context(ca: TestCA, tmp_path: Path, *names: str) -> tuple[str, str]:
    pair = ca.issue(*names)
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(pair.cert_pem)
    key.write_bytes(pair.key_pem)
    return str(cert), str(key)


async def test_https_answers_carry_the_tls_object(ca: TestCA, tmp_path: Path) -> None:
    cert, key = _context(ca, tmp_path, "backend.demo")
    identity = EchoIdentity(pod="echo-s-7c9d5f-1", namespace="demo", service="echo-s")
    async with EchoServer(identity, tls=server_context(cert, key)) as echo:
        response = await http.request(
            "GET",
            "127.0.0.1",
            echo.port,
            "/secure?x=1",
            host_header="backend.demo",
            tls=ca.client_context(),
            server_name="backend.demo",
        )
        assert response.status == 200
        body = response.json()
        assert body["path"] == "/secure?x=1"
        assert body["pod"] == "echo-s-7c9d5f-1"
        assert body["tls"]["serverName"] == "backend.demo"
        assert body["tls"]["version"].startswith("TLSv1.")
        assert body["tls"]["cipherSuite"]
        # The client offered no ALPN, so none was negotiated.
        assert body["tls"]["negotiatedProtocol"] == ""
        # Plain HTTP on the HTTPS port gets no answer.
        with pytest.raises((OSError, asyncio.IncompleteReadError, http.HttpError, TimeoutError)):
            await http.get("127.0.0.1", echo.port, "/", timeout=3)


async def test_plain_answers_have_no_tls_object() -> None:
    async with EchoServer(EchoIdentity(pod="p-x-y")) as echo:
        body = (await http.get("127.0.0.1", echo.port, "/")).json()
        assert "tls" not in body


async def test_log_keeps_every_request_read_even_failed_ones() -> None:
    async with EchoServer(EchoIdentity(pod="p-x-y")) as echo:
        await http.get("127.0.0.1", echo.port, "/a?q=1", host_header="one.local", headers={"X-N": "1"})
        await http.get("127.0.0.1", echo.port, "/status/500", host_header="two.local")
        await http.get(
            "127.0.0.1",
            echo.port,
            "/retry/r?uuid=u&succeedAfter=1&responseCode=503",
            host_header="three.local",
        )
        assert [(r.method, r.target, r.host) for r in echo.log] == [
            ("GET", "/a?q=1", "one.local"),
            ("GET", "/status/500", "two.local"),
            ("GET", "/retry/r?uuid=u&succeedAfter=1&responseCode=503", "three.local"),
        ]
        assert echo.log[0].header("x-n") == "1"


async def test_cli_serves_https_with_a_certificate(ca: TestCA, tmp_path: Path) -> None:
    cert, key = _context(ca, tmp_path, "cli.demo")
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xdsbus_dev.echo",
        "--port",
        str(port),
        "--pod",
        "echo-t-1-2",
        "--tls-cert",
        cert,
        "--tls-key",
        key,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await http.wait_listening(port)
        response = await http.request(
            "GET",
            "127.0.0.1",
            port,
            "/",
            host_header="cli.demo",
            tls=ca.client_context(),
            server_name="cli.demo",
        )
        assert response.json()["tls"]["serverName"] == "cli.demo"
        assert response.json()["pod"] == "echo-t-1-2"
    finally:
        if proc.returncode is None:
            os.kill(proc.pid, signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 10)
