"""A command that cannot do its job says what went wrong and what to do next (a `hint:` line), with
exit status 2: no NATS at the URL, no layout on the server, no ledger in the scope."""

from __future__ import annotations

from pathlib import Path

import pytest

from xdsbus.cli.main import main
from xdsbus_dev.harness.processes import NatsServer, free_port


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    status = main(argv)
    captured = capsys.readouterr()
    assert captured.out == ""
    return status, captured.err


def test_no_nats_at_the_url(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    status, err = run(["--nats-url", url, "ledger", "log"], capsys)
    assert status == 2
    assert f"xdsbus: cannot connect to NATS at {url} (no credentials)" in err
    assert "hint: is nats-server running there? `make run` starts the local stack" in err
    assert "--nats-url URL or XDSBUS_NATS_URL" in err


def test_a_server_without_the_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    server = NatsServer(tmp_path / "nats", layout=None)
    server.start()
    try:
        status, err = run(["ledger", "log", "--nats-url", server.url], capsys)
    finally:
        server.stop()
    assert status == 2
    assert f"xdsbus: NATS at {server.url} has no xdsbus layout yet, so no ledger" in err
    assert "hint: `xdsbus layout --apply` creates it" in err


def test_a_scope_without_a_ledger(nats_server: NatsServer, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["ledger", "show", "3"], ["dump", "out"]):
        status, err = run(["--scope", "empty", *argv, "--nats-url", nats_server.url], capsys)
        assert status == 2, argv
        assert "xdsbus: no ledger in scope 'empty' yet\nhint: is a builder running" in err, argv
    # Listing finds nothing, and says why on stderr: the JSON stays a list.
    assert main(["ledger", "log", "--json", "--scope", "empty", "--nats-url", nats_server.url]) == 0
    captured = capsys.readouterr()
    assert captured.out == "[]\n"
    assert "xdsbus: no ledger in scope 'empty' yet\nhint: is a builder running" in captured.err
