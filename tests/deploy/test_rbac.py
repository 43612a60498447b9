"""The Kubernetes rights deploy/ grants the watcher are exactly the requests it makes.

What the watcher calls comes from its own table (xdsbus_watch_k8s.resources: the feeds it lists and
watches for the settings the rendered Deployment gives it, and the status writes); what it may do comes
from the rendered RBAC objects, resolved through their bindings to its ServiceAccount. docs/design.md §10.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import pytest
import yaml

from tests.deploy.support import DEPLOY, RENDERED, Manifest, name_of, render
from xdsbus_watch_k8s.resources import SECRET, Access, api_access, feeds

SERVICE_ACCOUNT = ("xdsbus", "xdsbus-watch-k8s")
CLUSTER = "*"  # the scope of a grant through a ClusterRoleBinding
LIST_WATCH = ("list", "watch")

Grants = dict[str, set[Access]]  # scope (a namespace, or CLUSTER) -> rights


def grants(docs: list[Manifest], account: tuple[str, str] = SERVICE_ACCOUNT) -> Grants:
    """What `account` may do, per scope: each binding naming it, resolved to its role's rules. Wildcards
    and resourceNames are refused outright, so every right is spelled out."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d for d in docs}
    out: Grants = defaultdict(set)
    for binding in docs:
        if binding["kind"] not in ("ClusterRoleBinding", "RoleBinding"):
            continue
        if not any(_names(s, account, binding) for s in binding.get("subjects", [])):
            continue
        scope = binding["metadata"]["namespace"] if binding["kind"] == "RoleBinding" else CLUSTER
        ref = binding["roleRef"]
        role_namespace = None if ref["kind"] == "ClusterRole" else binding["metadata"]["namespace"]
        role = roles.get((ref["kind"], role_namespace, ref["name"]))
        assert role is not None, f"{name_of(binding)}: {ref['kind']} {ref['name']} is not rendered"
        for rule in role.get("rules", []):
            assert not rule.get("resourceNames") and not rule.get("nonResourceURLs"), name_of(role)
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{name_of(role)}: a wildcard in {field}"
            out[scope] |= {
                Access(group, resource, verb)
                for group in rule["apiGroups"]
                for resource in rule["resources"]
                for verb in rule["verbs"]
            }
    return dict(out)


def _names(subject: Manifest, account: tuple[str, str], binding: Manifest) -> bool:
    namespace = subject.get("namespace", binding["metadata"].get("namespace"))
    return subject["kind"] == "ServiceAccount" and (namespace, subject["name"]) == account


def watcher_env(docs: list[Manifest]) -> dict[str, str]:
    (deployment,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "xdsbus-watch-k8s"
    ]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


def secret_namespaces(env: dict[str, str]) -> list[str]:
    return sorted({n.strip() for n in env.get("XDSBUS_SECRET_NAMESPACES", "").split(",") if n.strip()})


def check_exact(docs: list[Manifest]) -> list[str]:
    """Every difference between what the rendered watcher calls and what it is granted; [] when exact."""
    env = watcher_env(docs)
    table = feeds(
        env.get("XDSBUS_WATCH_NAMESPACE", ""), env["XDSBUS_SYSTEM_NAMESPACE"], secret_namespaces(env)
    )
    used = api_access(table)
    granted = grants(docs)
    problems = [f"granted, never called: {a}" for a in sorted(set().union(*granted.values()) - used)]
    everywhere = granted.get(CLUSTER, set())
    for feed in table:
        for verb in LIST_WATCH:
            access = Access(feed.resource.group, feed.resource.plural, verb)
            where = granted.get(feed.namespace, set()) if feed.namespace is not None else set()
            if access not in everywhere | where:
                problems.append(f"called, not granted: {access} for {feed.name}")
    # The status writes: cluster-wide, as the objects are wherever the watched Ingresses and routes are.
    reads = {Access(f.resource.group, f.resource.plural, verb) for f in table for verb in LIST_WATCH}
    problems += [f"called, not granted: {a}" for a in sorted(used - reads - everywhere)]
    return problems


@pytest.mark.parametrize("path", RENDERED)
def test_the_watcher_is_granted_exactly_what_it_calls(path: str) -> None:
    docs = render(path)
    assert check_exact(docs) == []
    # By default (XDSBUS_SECRET_NAMESPACES unset) Secrets are read, and granted, in every namespace.
    assert secret_namespaces(watcher_env(docs)) == []
    assert {Access("", "secrets", v) for v in LIST_WATCH} <= grants(docs)[CLUSTER]


def test_no_other_account_has_any_right() -> None:
    """The watcher is the only service that talks to the Kubernetes API."""
    for doc in render("deploy"):
        if doc["kind"] in ("ClusterRoleBinding", "RoleBinding"):
            subjects = {(s.get("namespace"), s["name"]) for s in doc["subjects"]}
            assert subjects == {SERVICE_ACCOUNT}, name_of(doc)


def test_an_extra_right_or_a_missing_one_is_named() -> None:
    docs = [dict(d) for d in render("deploy")]
    for i, doc in enumerate(docs):
        if doc["kind"] == "ClusterRole" and doc["metadata"]["name"] == "xdsbus-watch-k8s-secrets":
            docs[i] = {
                **doc,
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}],
            }
    assert check_exact(docs) == [
        "granted, never called: Access(group='', resource='secrets', verb='get')",
        "called, not granted: Access(group='', resource='secrets', verb='watch') "
        "for Secret in all namespaces",
    ]


def restricted_overlay(tmp_path: Path, namespaces: list[str]) -> list[Manifest]:
    """What deploy/README.md tells a user to write: the component secret-namespaces plus a RoleBinding per
    further namespace, and the namespaces in XDSBUS_SECRET_NAMESPACES."""
    component = DEPLOY / "watch-k8s" / "secret-namespaces"
    binding = yaml.safe_load((component / "rolebinding.yaml").read_text())
    extra = []
    for namespace in namespaces[1:]:
        binding["metadata"]["namespace"] = namespace
        (tmp_path / f"secrets-{namespace}.yaml").write_text(yaml.safe_dump(binding))
        extra.append(f"secrets-{namespace}.yaml")
    env_patch = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "xdsbus-watch-k8s"},
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "watch-k8s",
                            "env": [{"name": "XDSBUS_SECRET_NAMESPACES", "value": ",".join(namespaces)}],
                        }
                    ]
                }
            }
        },
    }
    (tmp_path / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "resources": [os.path.relpath(DEPLOY / "base", tmp_path), *extra],
                "components": [os.path.relpath(component, tmp_path)],
                "patches": [{"patch": yaml.safe_dump(env_patch)}],
            }
        )
    )
    return render(tmp_path)


def test_the_component_grants_secrets_only_in_the_named_namespaces(tmp_path: Path) -> None:
    docs = restricted_overlay(tmp_path, ["higress-system", "shop", "tenant-a"])
    assert check_exact(docs) == []
    granted = grants(docs)
    assert not {a for a in granted[CLUSTER] if a.resource == SECRET.plural}
    secrets = {Access("", "secrets", v) for v in LIST_WATCH}
    assert {scope: rights for scope, rights in granted.items() if scope != CLUSTER} == {
        "higress-system": secrets,
        "shop": secrets,
        "tenant-a": secrets,
    }


def test_the_component_alone_reads_the_system_namespace(tmp_path: Path) -> None:
    docs = restricted_overlay(tmp_path, ["higress-system"])
    assert check_exact(docs) == []
    assert secret_namespaces(watcher_env(docs)) == ["higress-system"]
    assert set(grants(docs)) == {CLUSTER, "higress-system"}
