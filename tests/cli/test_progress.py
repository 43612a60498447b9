"""`replay` and `dump` draw a progress bar on stderr when it is a terminal, and stay quiet piped or
with --json; errors about versions name the command that lists them."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.builder.support import run_cli, running_builder, wait_for_caught_up
from tests.support.objects import endpoint_slice, service
from tests.support.sources import ScriptedSource
from xdsbus.bus import Bus
from xdsbus.cli import flags
from xdsbus.cli.main import main
from xdsbus.cli.progress import ERASE_LINE, Progress, progress
from xdsbus.ledger import reader
from xdsbus_dev.harness.processes import NatsServer, tool


async def on_terminal(*argv: str) -> tuple[int, str, str]:
    """Run `argv` with stderr on a pseudo-terminal and stdout a pipe: its exit status, its stdout, and
    what the terminal received."""
    master, slave = os.openpty()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=slave,
            env={**os.environ, "TERM": "xterm"},
        )
    finally:
        os.close(slave)

    def drain() -> bytes:
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed its end
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    try:
        terminal, (out, _) = await asyncio.wait_for(
            asyncio.gather(asyncio.to_thread(drain), proc.communicate()), 60
        )
    finally:
        os.close(master)
    return proc.returncode or 0, out.decode(), terminal.decode()


async def test_a_bar_on_a_terminal_and_none_in_a_pipe(
    bus: Bus, nats_server: NatsServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = ScriptedSource(bus)
    async with running_builder(bus):
        for name in ("a", "b", "c"):
            await src.put(service(name))
            await src.put(endpoint_slice(name, ["10.0.0.1"]))
        version = (await wait_for_caught_up(bus)).version
    count = len(await reader.resource_set(bus, "default", version))
    url = nats_server.url

    # Global flags before the subcommand, stderr a terminal: the bar, erased at the end.
    dumped = tmp_path / "dump"
    xdsbus = tool("xdsbus")
    status, out, terminal = await on_terminal(
        xdsbus, "--nats-url", url, "--scope", "default", "dump", str(dumped)
    )
    assert status == 0, terminal
    assert sorted(out.splitlines()) == sorted(str(p) for p in dumped.iterdir())
    assert "dump: reading bodies [" in terminal and f"] {count}/{count} resources" in terminal, terminal
    assert terminal.endswith(ERASE_LINE)

    status, out, terminal = await on_terminal(xdsbus, "replay", "--seq", str(version), "--nats-url", url)
    assert status == 0, terminal
    assert f"seq: {version}\n" in out
    assert "replay: folding events [" in terminal and f"] {version}/{version} events" in terminal, terminal
    assert "replay: translating" in terminal and terminal.endswith(ERASE_LINE)

    # Piped: nothing on stderr.
    status, out, err = await run_cli(url, "replay", "--seq", str(version))
    assert (status, err) == (0, "")
    assert f"seq: {version}\n" in out

    # A version the ledger lacks; a scope without a ledger, naming those with one.
    status = await asyncio.to_thread(main, ["ledger", "show", str(version + 100), "--nats-url", url])
    assert status == 2
    assert capsys.readouterr().err == (
        f"xdsbus: version {version + 100} is not in the ledger of scope 'default'\n"
        "hint: `xdsbus ledger log` lists the versions\n"
    )
    elsewhere = ["--scope", "gateway.x.y", "ledger", "show", "1", "--nats-url", url]
    assert await asyncio.to_thread(main, elsewhere) == 2
    err = capsys.readouterr().err
    assert "no ledger in scope 'gateway.x.y' yet\nhint: the scopes with a ledger are default" in err, err


def _written(master: int) -> str:
    """What the terminal holds so far (its writer is this process: all of it is there)."""
    os.set_blocking(master, False)
    chunks = []
    while True:
        try:
            chunks.append(os.read(master, 4096))
        except BlockingIOError:
            return b"".join(chunks).decode()


def test_json_output_draws_no_bar_even_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = os.openpty()
    with os.fdopen(slave, "w") as terminal:
        monkeypatch.setattr(sys, "stderr", terminal)
        monkeypatch.setenv("TERM", "xterm")
        for as_json, drawn in ((True, False), (False, True)):
            args = flags.resolve(flags.global_flags().parse_args(["--json"] if as_json else []), {})
            with progress(args, "dump", "resources", total=2) as bar:
                bar.advance(2)
            received = _written(master)
            assert ("2/2 resources" in received) == drawn, (as_json, received)
    os.close(master)


def test_the_bar_fits_the_terminal() -> None:
    bar = Progress("replay: folding events", "events", sys.stderr, enabled=False, total=200)
    bar.update(50)
    line = bar.render(79)
    assert len(line) == 79 and line.endswith("] 50/200 events")
    assert line.count("#") * 4 == line.count("#") + line.count(".")
    assert bar.render(30) == "replay: folding events 50/200 events"[:30]
    translating = Progress("replay: translating", "events", sys.stderr, enabled=False)
    assert translating.render(79) == "replay: translating"
