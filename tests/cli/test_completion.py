"""`xdsbus completion bash|zsh|fish` prints a script that completes subcommands, flags and their
values, checked in the real shells: bash always, zsh and fish where they are installed."""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from xdsbus.cli.main import main


def script(shell: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    """The completion script for `shell`, as the command prints it, in a file."""
    assert main(["completion", shell]) == 0
    path = tmp_path / f"xdsbus.{shell}"
    path.write_text(capsys.readouterr().out)
    return path


def bash_completions(path: Path, *words: str) -> list[str]:
    """What the script's completion function offers for the command line `words` (the last one being
    completed), read from bash itself."""
    probe = f"""
source {path}
complete -p xdsbus | grep -q -- '-F _xdsbus' || exit 3
COMP_WORDS=({" ".join(f"'{w}'" for w in words)})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_xdsbus
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    result = subprocess.run(["bash", "--norc", "-c", probe], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_subcommands_flags_and_values(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = script("bash", capsys, tmp_path)
    assert {"ledger", "replay", "dump", "status", "completion"} <= set(bash_completions(path, "xdsbus", ""))
    assert bash_completions(path, "xdsbus", "le") == ["ledger"]
    # Global flags and their values before the subcommand are skipped over.
    assert bash_completions(path, "xdsbus", "--nats-url", "nats://h:4222", "--json", "ledger", "") == [
        "log",
        "show",
        "diff",
    ]
    assert bash_completions(path, "xdsbus", "ledger", "log", "--l") == ["--limit"]
    assert bash_completions(path, "xdsbus", "--scope", "s", "ledger", "show", "--s") == ["--scope"]
    assert bash_completions(path, "xdsbus", "proxy-config", "p", "--type", "e") == ["endpoints", "extensions"]
    assert bash_completions(path, "xdsbus", "completion", "") == ["bash", "zsh", "fish"]
    # A flag taking a file name completes file names.
    (tmp_path / "keys.txt").write_text("")
    assert bash_completions(path, "xdsbus", "keyring", "list", "--key-file", f"{tmp_path}/keys.") == [
        f"{tmp_path}/keys.txt"
    ]


@pytest.mark.skipif(shutil.which("fish") is None, reason="fish is not installed")
def test_fish_completes_subcommands_with_their_help(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = script("fish", capsys, tmp_path)

    def complete(line: str) -> list[str]:
        result = subprocess.run(
            ["fish", "--no-config", "-c", f"source {path}; complete -C '{line}'"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.splitlines()

    assert "ledger\tread the ledger" in complete("xdsbus ")
    assert [c.split("\t")[0] for c in complete("xdsbus --scope s ledger ")] == ["diff", "log", "show"]
    assert complete("xdsbus proxy-status -o ") == ["json", "table"]


@pytest.mark.skipif(shutil.which("zsh") is None, reason="zsh is not installed")
def test_zsh_lists_the_subcommands_in_an_interactive_shell(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """zsh completes only in its line editor: a zsh on a pseudo-terminal is sent a line and a TAB."""
    path = script("zsh", capsys, tmp_path)
    master, slave = os.openpty()
    env = {**os.environ, "TERM": "xterm", "HOME": str(tmp_path)}
    shell = subprocess.Popen(
        ["zsh", "-f", "-i"], stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True
    )
    os.close(slave)
    try:
        os.write(master, f"autoload -U compinit; compinit -u; source {path}\n".encode())
        os.write(master, b"xdsbus --json ledger \t")
        seen = b""
        deadline = time.monotonic() + 20
        while not all(word in seen for word in (b"diff", b"log", b"show")):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"zsh offered no subcommands of ledger: {seen!r}"
            if select.select([master], [], [], remaining)[0]:
                seen += os.read(master, 4096)
    finally:
        shell.kill()
        shell.wait()
        os.close(master)
