"""The real Envoy accepts everything the generators make: every route feature, policy and aggregate
clusters, HTTP and HTTPS listeners, and secrets, loaded as a static bootstrap in `--mode validate`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.envoy_config import everything, static_bootstrap, write_json
from xdsbus_dev.harness.processes import tool


def test_envoy_validates_every_generated_feature(tmp_path: Path) -> None:
    config = everything(http_port=18080, https_port=18443)
    path = write_json(tmp_path / "bootstrap.json", static_bootstrap(config, admin_port=19901))
    result = subprocess.run(
        [
            tool("envoy"),
            "--mode",
            "validate",
            "-c",
            str(path),
            "--disable-hot-restart",
            "--log-level",
            "warn",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
