"""docker-compose.yml validated offline against the Compose specification, and what its comments
promise: the default profile as before, and a `registries` profile whose McpBridge (examples/.registries)
points at its Nacos, Consul and Eureka, where its registrar containers put the demo services."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from tests.deploy.support import COMPOSE_FILE, EXAMPLES, REPO, compose_errors, load_yaml
from xdsbus.health import DEFAULT_PORTS
from xdsbus_dev.nats_users import COMPOSE_ROLES

DEFAULT_SERVICES = {
    "console",
    "nats-users",
    "layout",
    "xds-certs",
    "nats",
    "builder",
    "watch-file",
    "watch-nacos",
    "watch-consul",
    "watch-eureka",
    "edge-1",
    "edge-2",
    "envoy",
    "echo-a",
    "echo-b",
}
REGISTRY_SERVICES = {
    "watch-file-registries",
    "nacos",
    "consul",
    "eureka",
    "register-nacos",
    "register-consul",
    "register-eureka",
}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert compose_errors(compose) == []


def test_a_broken_compose_file_is_rejected(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["nacos"]["profile"] = ["registries"]  # a typo of `profiles`
    broken["services"]["edge-2"]["ports"] = "15015:15014"  # a string, not a list
    errors = compose_errors(broken)
    assert any(e.startswith("services.nacos:") and "'profile'" in e for e in errors), errors
    assert any(e.startswith("services.edge-2.ports:") for e in errors), errors


def test_profiles_split_the_default_stack_from_the_registries(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == DEFAULT_SERVICES | REGISTRY_SERVICES
    assert {n for n, s in services.items() if "profiles" not in s} == DEFAULT_SERVICES
    assert {n for n, s in services.items() if s.get("profiles") == ["registries"]} == REGISTRY_SERVICES


def test_every_xdsbus_image_builds_from_the_one_dockerfile(compose: dict[str, Any]) -> None:
    built = {n: s for n, s in compose["services"].items() if "build" in s}
    assert set(built) >= {"builder", "edge-1", "echo-a", "watch-file", "watch-nacos"}
    for name, service in built.items():
        build = service["build"]
        assert build["context"] == "." and build["dockerfile"] == "Dockerfile", name
        assert service["image"] == f"xdsbus-{build['args']['SERVICE']}:dev", name


def test_the_builder_and_the_watchers_have_a_healthcheck_on_their_ready_page(compose: dict[str, Any]) -> None:
    """yaml.safe_load resolves the merge keys, so a service that inherits one is checked as run; one-shot
    jobs (an entrypoint of their own: the layout) run no health port."""
    checked = set()
    for name, service in compose["services"].items():
        prog = service.get("image", "").removesuffix(":dev")
        if prog not in DEFAULT_PORTS or "entrypoint" in service:
            continue
        test = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{DEFAULT_PORTS[prog]}/ready" in test, name
        checked.add(prog)
    assert checked == set(DEFAULT_PORTS) - {"xdsbus-watch-k8s"}


def test_echo_backends_run_from_the_dev_image_where_the_examples_point(compose: dict[str, Any]) -> None:
    ports = {
        e["metadata"]["labels"]["kubernetes.io/service-name"]: e["ports"][0]["port"]
        for e in load_yaml(EXAMPLES / "services.yaml")
        if e["kind"] == "EndpointSlice"
    }
    for name in ("echo-a", "echo-b"):
        service = compose["services"][name]
        assert service["image"] == "xdsbus-dev:dev"
        argv = service["entrypoint"]
        assert argv[:3] == ["python", "-m", "xdsbus_dev.echo"]
        assert argv[argv.index("--port") + 1] == str(ports[name])
        assert argv[argv.index("--service") + 1] == name
        assert service["network_mode"] == "service:envoy"


def test_default_watch_file_does_not_read_the_registries_folder() -> None:
    """watch-file skips names starting with a dot; `make run` and the default profile read examples/."""
    assert (EXAMPLES / ".registries").is_dir()
    visible = [
        p
        for p in EXAMPLES.rglob("*.yaml")
        if not any(part.startswith(".") for part in p.relative_to(EXAMPLES).parts)
    ]
    bridges = [d for p in visible for d in load_yaml(p) if d["kind"] == "McpBridge"]
    assert [r["type"] for b in bridges for r in b["spec"]["registries"]] == ["static"]


def test_the_registries_mcpbridge_wins_and_points_at_the_profiles_servers(compose: dict[str, Any]) -> None:
    services = compose["services"]
    reader = services["watch-file-registries"]
    assert reader["volumes"] == ["./examples/.registries:/config:ro", "nats-users:/nats-users:ro"]
    argv = reader["command"]
    ours = f"file/{argv[argv.index('--source-name') + 1]}"
    default = f"file/{services['watch-file']['command'][-1].strip('/')}"
    assert default == "file/config"
    assert ours < default, "the first source by name holds the McpBridge that counts"

    (bridge,) = [
        d for d in load_yaml(EXAMPLES / ".registries" / "mcpbridge.yaml") if d["kind"] == "McpBridge"
    ]
    assert (bridge["metadata"]["namespace"], bridge["metadata"]["name"]) == ("higress-system", "default")
    registries = {r["type"]: r for r in bridge["spec"]["registries"]}
    published = {
        name: {int(p.split(":")[-1]) for p in services[name].get("ports", [])}
        for name in ("nacos", "consul", "eureka")
    }
    assert (registries["nacos2"]["domain"], registries["nacos2"]["port"]) == ("nacos", 8848)
    assert (registries["consul"]["domain"], registries["consul"]["port"]) == ("consul", 8500)
    assert (registries["eureka"]["domain"], registries["eureka"]["port"]) == ("eureka", 8761)
    assert published == {"nacos": {8848}, "consul": {8500}, "eureka": {8761}}
    # The static registry of examples/mcpbridge.yaml stays, so /static keeps working in this profile.
    (default_bridge,) = [d for d in load_yaml(EXAMPLES / "mcpbridge.yaml") if d["kind"] == "McpBridge"]
    assert default_bridge["spec"]["registries"][0] in bridge["spec"]["registries"]


def test_each_registry_serves_the_route_its_registrar_registers(compose: dict[str, Any]) -> None:
    """The Ingress destinations are the Higress host names of what the scripts register, at the port
    of an echo backend."""
    destinations = {
        d["spec"]["rules"][0]["http"]["paths"][0]["path"]: d["metadata"]["annotations"][
            "higress.io/destination"
        ]
        for d in load_yaml(EXAMPLES / ".registries" / "ingress.yaml")
    }
    assert destinations == {
        "/nacos": "echo-nacos.DEFAULT-GROUP.public.nacos:18081",
        "/consul": "echo-consul.dc1.consul:18082",
        "/eureka": "ECHO-EUREKA.eureka:18081",
    }
    scripts = REPO / "deploy" / "compose" / "registries"
    expect = {
        "nacos": ["serviceName=echo-nacos", "groupName=DEFAULT_GROUP", "port=18081"],
        "consul": ['"Name": "echo-consul"', '"Port": 18082'],
        "eureka": ["apps/ECHO-EUREKA", '"$": 18081'],
    }
    for registry, needles in expect.items():
        service = compose["services"][f"register-{registry}"]
        assert service["depends_on"] == [registry]
        assert service["volumes"] == ["./deploy/compose/registries:/registries:ro"]
        assert service["entrypoint"] == ["sh", f"/registries/register-{registry}.sh"]
        text = (scripts / f"register-{registry}.sh").read_text()
        for needle in needles:
            assert needle in text, (registry, needle)


@pytest.mark.parametrize("script", ["register-nacos.sh", "register-consul.sh", "register-eureka.sh"])
def test_registrar_scripts_parse(script: str) -> None:
    sh = shutil.which("sh")
    assert sh is not None
    proc = subprocess.run(
        [sh, "-n", str(REPO / "deploy" / "compose" / "registries" / script)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr


def test_files_compose_mounts_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (REPO / source).exists(), f"{name}: {source}"
    assert re.fullmatch(r"\./\.data/secret\.key", compose["secrets"]["xdsbus_secret_key"]["file"])


def test_nats_admits_one_user_per_role_and_each_service_reads_its_own(compose: dict[str, Any]) -> None:
    """docs/design.md §10: the nats-users one-shot writes the users; every service connects as its role."""
    services = compose["services"]
    users = services["nats-users"]
    assert users["entrypoint"][:3] == ["python", "-m", "xdsbus_dev.local_nats"]
    nats = services["nats"]
    assert nats["command"][:2] == ["-c", "/nats-users/nats.conf"]
    assert nats["depends_on"]["nats-users"] == {"condition": "service_completed_successfully"}
    roles = {role.user for role in COMPOSE_ROLES}
    expected = {
        "layout": "layout",
        "builder": "builder",
        "watch-file": "watch-file",
        "watch-file-registries": "watch-file-registries",
        "watch-nacos": "watch-nacos",
        "watch-consul": "watch-consul",
        "watch-eureka": "watch-eureka",
        "edge-1": "edge",
        "edge-2": "edge",
        "console": "reader",
    }
    for name, role in expected.items():
        service = services[name]
        assert role in roles, role
        assert service["environment"]["XDSBUS_NATS_PASSWORD_FILE"] == f"/nats-users/{role}", name
        assert "nats-users:/nats-users:ro" in service["volumes"], name
    # Nothing else connects to NATS: whoever has the URL has a user.
    with_url = {n for n, s in services.items() if "XDSBUS_NATS_URL" in (s.get("environment") or {})}
    assert with_url == set(expected)
