"""The import contracts of pyproject.toml ([tool.importlinter]) hold: imports in xdsbus run one way, down
its layers; services import nothing of each other; no package has an import cycle. Checked with
import-linter (`lint-imports`), which reads the imports statically: a run takes well under a second."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(config: Path, *, cwd: Path = ROOT, pythonpath: Path | None = None) -> tuple[int, str]:
    """Run `lint-imports` on a configuration file; its exit status and report."""
    env = None
    if pythonpath is not None:
        env = {"PYTHONPATH": str(pythonpath), "PATH": str(LINT_IMPORTS.parent)}
    proc = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", str(config)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc.returncode, proc.stdout + proc.stderr


def contracts_toml(root_packages: list[str], contracts: list[dict[str, object]]) -> str:
    """An import-linter configuration in pyproject.toml form."""

    def value(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return '"' + str(v).replace('"', '\\"') + '"'

    lines = ["[tool.importlinter]", f"root_packages = {value(root_packages)}"]
    for contract in contracts:
        lines += ["", "[[tool.importlinter.contracts]]"]
        lines += [f"{k} = {value(v)}" for k, v in contract.items()]
    return "\n".join(lines) + "\n"


def test_the_project_keeps_its_import_contracts() -> None:
    code, report = lint_imports(ROOT / "pyproject.toml")
    assert code == 0, report
    assert "BROKEN" not in report and "KEPT" in report


def test_the_layers_contract_sees_the_real_imports(tmp_path: Path) -> None:
    # The project's own xdsbus layers, turned upside down: every import the code makes is now upward,
    # so the checker must report the layers contract broken.
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c.get("containers") == ["xdsbus"]]
    inverted = {**layers, "name": "inverted", "layers": list(reversed(layers["layers"]))}
    path = tmp_path / "pyproject.toml"
    path.write_text(contracts_toml(config["root_packages"], [inverted]))
    code, report = lint_imports(path)
    assert code != 0, report
    assert "inverted BROKEN" in report
    assert "xdsbus.bus is not allowed to import xdsbus.layout" in report


def test_an_upward_import_and_a_cycle_are_rejected(tmp_path: Path) -> None:
    package = tmp_path / "probe"
    (package / "upper").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "upper" / "__init__.py").write_text("")
    (package / "lower.py").write_text("from probe.upper import api\n")  # upward
    (package / "upper" / "api.py").write_text("from probe.upper import impl\n")
    (package / "upper" / "impl.py").write_text("from probe.upper import api\n")  # a cycle
    config = tmp_path / "pyproject.toml"
    config.write_text(
        contracts_toml(
            ["probe"],
            [
                {
                    "name": "probe layers",
                    "type": "layers",
                    "containers": ["probe"],
                    "layers": ["upper", "lower"],
                },
                {"name": "probe cycles", "type": "acyclic_siblings", "ancestors": ["probe"]},
            ],
        )
    )
    code, report = lint_imports(config, cwd=tmp_path, pythonpath=tmp_path)
    assert code != 0, report
    assert "probe layers BROKEN" in report and "probe.lower is not allowed to import probe.upper" in report
    assert "probe cycles BROKEN" in report and "No cycles are allowed in probe.upper" in report
