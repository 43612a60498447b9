"""Every service's command line: a bad value in the environment is a usage error (exit status 2, argparse's
message naming the variable), before the service reaches for NATS, never a traceback; a flag on the command
line wins over the variable; and the shared parser's rules on their own."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from xdsbus.service_flags import ServiceParser, add_common_flags, port
from xdsbus_dev.harness.processes import free_port, tool

# (service, variable, bad value, what the error says after "<variable>: ")
BAD_ENVIRONMENT = [
    ("builder", "XDSBUS_DEBOUNCE_QUIET", "abc", "invalid float value: 'abc'"),
    ("edge", "XDSBUS_LAZY_SCOPES", "maybe", "invalid choice: 'maybe'"),
    ("watch-file", "XDSBUS_POLL_INTERVAL", "soon", "invalid float value: 'soon'"),
    ("watch-k8s", "XDSBUS_RESYNC_TIMEOUT", "1.5", "invalid int value: '1.5'"),
    ("watch-nacos", "XDSBUS_LEASE_TTL", "abc", "invalid float value: 'abc'"),
    ("watch-consul", "XDSBUS_NATS_REPLICAS", "0", "must be at least 1, not 0"),
    ("watch-eureka", "XDSBUS_LOG_LEVEL", "loud", "unknown level 'loud'"),
    ("console", "XDSBUS_CONSOLE_LISTEN", "off", "the console needs a HOST:PORT"),
]


def run_service(service: str, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    # A NATS URL where nothing listens: a service that got past its flags would hang, not exit 2.
    base = {"PATH": os.environ["PATH"], "XDSBUS_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    return subprocess.run(
        [tool(f"xdsbus-{service}"), *argv], env={**base, **env}, capture_output=True, text=True, timeout=30
    )


@pytest.mark.parametrize(("service", "variable", "value", "message"), BAD_ENVIRONMENT)
def test_a_bad_environment_value_is_a_usage_error(
    service: str, variable: str, value: str, message: str
) -> None:
    result = run_service(service, {variable: value})
    assert result.returncode == 2, result.stderr
    assert f"xdsbus-{service}: error: {variable}: {message}" in result.stderr
    assert result.stderr.startswith("usage: ")
    assert "Traceback" not in result.stderr


def test_every_service_is_covered() -> None:
    services = {p.name for p in (Path(__file__).resolve().parents[1] / "services").iterdir() if p.is_dir()}
    assert services == {service for service, *_ in BAD_ENVIRONMENT}


def test_a_bad_flag_names_the_flag() -> None:
    result = run_service("builder", {}, "--gateway-http-port", "70000")
    assert result.returncode == 2
    assert "xdsbus-builder: error: --gateway-http-port: port 70000 is out of range 1-65535" in result.stderr


def parser() -> ServiceParser:
    p = ServiceParser(prog="svc")
    p.env_flag("--port", "T_PORT", type=port, default=80, help="a port")
    add_common_flags(p)
    return p


def test_the_flag_wins_over_the_variable_and_the_default_is_not_converted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("XDSBUS_LOG_LEVEL", raising=False)
    assert parser().parse([]).port == 80
    monkeypatch.setenv("T_PORT", "not a port")
    assert parser().parse(["--port", "8080"]).port == 8080
    monkeypatch.setenv("T_PORT", "8081")
    p = parser()
    args = p.parse([])
    assert args.port == 8081 and p.source("port") == "T_PORT"
    assert args.log_level == "info" and p.source("log_level") == "--log-level"


def test_a_check_after_parsing_names_where_the_value_came_from(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("T_PORT", "8081")
    p = parser()
    p.parse([])
    with pytest.raises(SystemExit) as exit_info:
        p.fail("port", "taken")
    assert exit_info.value.code == 2
    assert "svc: error: T_PORT: taken" in capsys.readouterr().err
