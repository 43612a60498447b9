"""--secret-namespaces: Secrets are read in the named namespaces alone, one list+watch each, and the
watcher never asks the API server for Secrets across the cluster (docs/design.md §10)."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.fakes.kube_api import GATEWAY_API_CRDS, HIGRESS_CRDS, FakeKubeApi, RequestRecord
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import (
    SYSTEM,
    StartWatcher,
    ingress,
    ingress_class,
    install,
    secret,
    upserted_keys,
    wait_synced,
)
from xdsbus.events import Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.secretbox import SecretBox
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.certs import TestCA
from xdsbus_dev.harness.processes import eventually
from xdsbus_watch_k8s.main import parse_settings
from xdsbus_watch_k8s.resources import Access, api_access

B64 = base64.b64encode(b"pem").decode()
_PAIR = TestCA().issue("shop.example.com", "other.example.com")
CERT = base64.b64encode(_PAIR.cert_pem).decode()
KEY = base64.b64encode(_PAIR.key_pem).decode()
CLUSTER_WIDE_SECRETS = "/api/v1/secrets"


def tls(name: str, namespace: str) -> dict[str, object]:
    return secret(name, namespace, type_="kubernetes.io/tls", tls_crt=CERT, tls_key=KEY)


def site(namespace: str, secret_name: str) -> dict[str, Any]:
    obj = ingress("site", namespace, host=f"{namespace}.example.com")
    obj["spec"]["tls"] = [{"hosts": [f"{namespace}.example.com"], "secretName": secret_name}]
    return obj


def ingress_warnings(log: EventLog, key: str) -> list[str]:
    """What the builder's translation says about an Ingress, from the events the watcher published."""
    state = FoldState()
    for seq, event in enumerate(log.events, start=1):
        apply(state, seq, event)
    translator = Translator(secret_box=SecretBox.from_env())
    translator.full_build(state)
    status = translator.statuses.get(ObjectRef("Ingress", "k8s/default", key))
    assert status is not None, key
    return status.warnings


def secret_paths(kube: FakeKubeApi) -> set[str]:
    return {r.path for r in kube.requests if r.path.endswith("/secrets")}


async def test_only_the_named_namespaces_are_read(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    for obj in [tls("shop-tls", "shop"), tls("other-tls", "other"), secret("registry", SYSTEM, token=B64)]:
        kube.create(obj)
    # An Ingress of a watched namespace naming a Secret of a namespace not named: published, the Secret not.
    kube.create(site("other", "other-tls"))
    kube.create(site("shop", "shop-tls"))

    await start_watcher(secret_namespaces=["shop", SYSTEM])
    await wait_synced(events, "Secret", "Ingress")
    assert upserted_keys(events, "Secret") == {"shop/shop-tls", f"{SYSTEM}/registry"}
    assert upserted_keys(events, "Ingress") == {"other/site", "shop/site"}
    # The builder's status on the Ingress says so; the one whose Secret is in a named namespace is fine.
    missing = "TLS secret kubernetes://other/other-tls not found or not usable"
    assert any(missing in w for w in ingress_warnings(events, "other/site"))
    assert not [w for w in ingress_warnings(events, "shop/site") if "TLS secret" in w]

    # Live: a change in a named namespace arrives, one elsewhere never does.
    kube.create(tls("late", "other"))
    kube.create(tls("late", "shop"))
    await events.wait_for(lambda log: "shop/late" in upserted_keys(log, "Secret"), "shop/late upserted")
    assert "other/late" not in {e.key for e in events.of(Op.UPSERT, "Secret")}

    paths = secret_paths(kube)
    assert CLUSTER_WIDE_SECRETS not in paths
    assert paths == {f"/api/v1/namespaces/{ns}/secrets" for ns in ("shop", SYSTEM)}
    assert any(r.watch for r in kube.requests if r.path == "/api/v1/namespaces/shop/secrets")


async def test_without_the_flag_secrets_are_read_cluster_wide(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    """The default, and what makes the test above able to fail: one feed across every namespace."""
    kube.create(tls("other-tls", "other"))
    await start_watcher()
    await wait_synced(events, "Secret")
    assert "other/other-tls" in upserted_keys(events, "Secret")
    assert secret_paths(kube) == {CLUSTER_WIDE_SECRETS}


def test_the_flag_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert parse_settings([]).secret_namespaces == ()
    assert parse_settings(["--secret-namespaces", "shop, higress-system,shop"]).secret_namespaces == (
        "higress-system",
        "shop",
    )
    monkeypatch.setenv("XDSBUS_SECRET_NAMESPACES", "tenant-a")
    assert parse_settings([]).secret_namespaces == ("tenant-a",)
    with pytest.raises(SystemExit) as exit_:
        parse_settings(["--secret-namespaces", "shop,Not_A_Namespace"])
    assert exit_.value.code == 2


def access_of(record: RequestRecord) -> tuple[Access, str | None]:
    """The RBAC right a request to the fake needed, and its namespace (None: cluster-wide)."""
    parts = [p for p in record.path.split("/") if p]
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    namespace = None
    if rest[0] == "namespaces" and len(rest) > 2:
        namespace, rest = rest[1], rest[2:]
    resource = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    if record.method == "PATCH":
        verb = "patch"
    elif len(rest) > 1:
        verb = "get"
    else:
        verb = "watch" if record.watch else "list"
    return Access(group, resource, verb), namespace


async def test_every_request_is_in_the_watchers_own_table(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    """What deploy/ grants is derived from resources.api_access (tests/deploy/test_rbac.py): the requests
    the watcher really makes, status writes included, are all in it, Secrets only where named."""
    install(kube, *HIGRESS_CRDS, *GATEWAY_API_CRDS)
    kube.create(tls("shop-tls", "shop"))
    kube.create(ingress_class("higress"))
    kube.create(site("shop", "shop-tls"))
    running = await start_watcher(secret_namespaces=["shop"], gateway_addresses=["192.0.2.10"])
    await wait_synced(events, "Secret", "Ingress", "HTTPRoute")

    def status_written() -> bool:
        obj = kube.get("networking.k8s.io/v1", "Ingress", "shop", "site") or {}
        return bool(obj.get("status", {}).get("loadBalancer"))

    await eventually(lambda: _true(status_written()), what="the Ingress status write")
    table = api_access(running.watcher.feeds)
    made = {access_of(r) for r in kube.requests}
    assert {"patch", "list", "watch"} <= {access.verb for access, _ in made}
    assert {access for access, _ in made} <= table
    assert {ns for access, ns in made if access.resource == "secrets"} == {"shop"}


async def _true(value: bool) -> bool:
    return value
