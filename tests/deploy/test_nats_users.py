"""deploy/ runs NATS with one user per role (docs/design.md §10): the shipped permissions are the ones the
library renders, nats-server accepts them, and each workload connects as its own role."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.deploy.support import DEPLOY, RENDERED, Manifest, name_of, render
from xdsbus_dev.harness.processes import tool
from xdsbus_dev.nats_users import DEPLOY_ROLES, deploy_authorization

# Which role each workload of deploy/ connects as.
ROLES = {
    "xdsbus-layout": "layout",
    "xdsbus-builder": "builder",
    "xdsbus-edge": "edge",
    "xdsbus-watch-file": "watch-file",
    "xdsbus-watch-k8s": "watch-k8s",
    "xdsbus-watch-nacos": "watch-nacos",
    "xdsbus-watch-consul": "watch-consul",
    "xdsbus-watch-eureka": "watch-eureka",
    "xdsbus-console": "reader",
}


def _pod_spec(doc: Manifest) -> Manifest:
    return doc["spec"]["template"]["spec"]  # type: ignore[no-any-return]


def _config(docs: list[Manifest], prefix: str, key: str) -> str:
    (config,) = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith(prefix)]
    return config["data"][key]  # type: ignore[no-any-return]


def test_the_shipped_permissions_are_the_rendered_ones() -> None:
    """deploy/nats/auth.conf is generated: `python -m xdsbus_dev.nats_users > deploy/nats/auth.conf`."""
    assert (DEPLOY / "nats" / "auth.conf").read_text() == deploy_authorization()


@pytest.mark.parametrize("path", RENDERED)
def test_nats_server_accepts_the_config_and_needs_every_password(path: str, tmp_path: Path) -> None:
    docs = render(path)
    # The StatefulSet mounts nats-config at /etc/nats and nats-auth at /etc/nats-auth: the same layout.
    (tmp_path / "nats").mkdir()
    (tmp_path / "nats-auth").mkdir()
    conf = tmp_path / "nats" / "nats.conf"
    conf.write_text(_config(docs, "nats-config", "nats.conf"))
    (tmp_path / "nats-auth" / "auth.conf").write_text(_config(docs, "nats-auth", "auth.conf"))
    (statefulset,) = [d for d in docs if d["kind"] == "StatefulSet"]
    (container,) = _pod_spec(statefulset)["containers"]
    passwords = {
        e["name"]: "pexample"
        for e in container["env"]
        if e.get("valueFrom", {}).get("secretKeyRef", {}).get("key") == "password"
    }
    assert set(passwords) == {role.password_variable for role in DEPLOY_ROLES}
    for variable in passwords:
        secret = next(e for e in container["env"] if e["name"] == variable)["valueFrom"]["secretKeyRef"][
            "name"
        ]
        assert secret.startswith("xdsbus-nats-"), variable
    env = {**os.environ, "SERVER_NAME": "nats-0", **passwords}

    def check(environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool("nats-server"), "-t", "-c", str(conf)],
            env=environ,
            capture_output=True,
            text=True,
            timeout=30,
        )

    accepted = check(env)
    assert accepted.returncode == 0, accepted.stderr
    env.pop("EDGE_NATS_PASSWORD")
    refused = check(env)
    assert refused.returncode != 0 and "EDGE_NATS_PASSWORD" in refused.stderr


@pytest.mark.parametrize("path", RENDERED)
def test_each_workload_connects_as_its_role_from_its_secret(path: str) -> None:
    docs = render(path)
    workloads = [d for d in docs if d["kind"] in ("Deployment", "Job") and d["metadata"]["name"] in ROLES]
    assert {d["metadata"]["name"] for d in workloads} == set(ROLES)
    for workload in workloads:
        role = ROLES[workload["metadata"]["name"]]
        spec = _pod_spec(workload)
        (container,) = spec["containers"]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["XDSBUS_NATS_USER"] == role, name_of(workload)
        (volume,) = [v for v in spec["volumes"] if v["name"] == "nats-user"]
        assert volume["secret"] == {"secretName": f"xdsbus-nats-{role}", "defaultMode": 0o440}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "nats-user"]
        assert env["XDSBUS_NATS_PASSWORD_FILE"] == f"{mount['mountPath']}/password"
        # The password file is group-readable, for the pod's group alone.
        assert spec["securityContext"]["fsGroup"] == spec["securityContext"]["runAsGroup"]
    # Envoy (the gateway) does not talk to NATS.
    (gateway,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "xdsbus-gateway"]
    assert "nats-user" not in str(gateway)
