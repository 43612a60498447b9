"""The console's rollback is opt-in (docs/console.md): `--allow-rollback` without a file of operator
tokens, or with a file holding none fit for use, refuses to start (exit status 2, before NATS); a token
names its operator, and only a whole token does."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from xdsbus_console.rollback import OperatorTokens
from xdsbus_dev.harness.processes import free_port, tool


def console(*argv: str) -> subprocess.CompletedProcess[str]:
    # A NATS URL where nothing listens: a console that got past its flags would wait, not exit 2.
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "PYTHONPATH")},
        "XDSBUS_NATS_URL": f"nats://127.0.0.1:{free_port()}",
    }
    return subprocess.run(
        [tool("xdsbus-console"), *argv], env=env, capture_output=True, text=True, timeout=30
    )


def test_allow_rollback_without_operator_tokens_refuses_to_start(tmp_path: Path) -> None:
    done = console("--allow-rollback")
    assert done.returncode == 2 and "--allow-rollback needs --operator-tokens-file" in done.stderr
    weak = tmp_path / "tokens"
    weak.write_text("# operators\nana:short\n")
    done = console("--allow-rollback", "--operator-tokens-file", str(weak))
    assert done.returncode == 2 and f"{weak}:2: expected NAME:TOKEN" in done.stderr


@pytest.mark.parametrize(
    ("header", "who"),
    [
        ("Bearer 0123456789abcdef-ana", "ana"),
        ("bearer 0123456789abcdef-bo", "bo"),
        ("Bearer 0123456789abcdef-an", None),
        ("Bearer 0123456789abcdef-ana2", None),
        ("Basic 0123456789abcdef-ana", None),
        ("", None),
    ],
)
def test_a_token_names_its_operator(tmp_path: Path, header: str, who: str | None) -> None:
    path = tmp_path / "tokens"
    path.write_text("ana:0123456789abcdef-ana\n\nbo: 0123456789abcdef-bo\n")
    assert OperatorTokens.read(path).who(header) == who
