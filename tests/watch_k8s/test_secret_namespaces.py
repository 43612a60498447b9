"""--secret-namespaces: Secrets are read in the named namespaces alone, one list+watch each, and the
watcher never asks the API server for Secrets across the cluster (docs/design.md §10)."""

from __future__ import annotations

import base64

import pytest

from tests.fakes.kube_api import FakeKubeApi
from tests.watch_file.conftest import EventLog
from tests.watch_k8s.conftest import SYSTEM, StartWatcher, ingress, secret, upserted_keys, wait_synced
from xdsbus.events import Op
from xdsbus_watch_k8s.main import parse_settings

B64 = base64.b64encode(b"pem").decode()
CLUSTER_WIDE_SECRETS = "/api/v1/secrets"


def tls(name: str, namespace: str) -> dict[str, object]:
    return secret(name, namespace, type_="kubernetes.io/tls", tls_crt=B64, tls_key=B64)


def secret_paths(kube: FakeKubeApi) -> set[str]:
    return {r.path for r in kube.requests if r.path.endswith("/secrets")}


async def test_only_the_named_namespaces_are_read(
    kube: FakeKubeApi, events: EventLog, start_watcher: StartWatcher
) -> None:
    for obj in [tls("shop-tls", "shop"), tls("other-tls", "other"), secret("registry", SYSTEM, token=B64)]:
        kube.create(obj)
    # An Ingress of a watched namespace naming a Secret of a namespace not named: published, the Secret not
    # (the builder's status on the Ingress then says the secret is not found).
    site = ingress("site", "other")
    site["spec"]["tls"] = [{"hosts": ["example.com"], "secretName": "other-tls"}]
    kube.create(site)

    await start_watcher(secret_namespaces=["shop", SYSTEM])
    await wait_synced(events, "Secret", "Ingress")
    assert upserted_keys(events, "Secret") == {"shop/shop-tls", f"{SYSTEM}/registry"}
    assert upserted_keys(events, "Ingress") == {"other/site"}

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
