"""The pure parts of the Kubernetes source: the ingress class rule (the builder's, which watch-k8s also
applies to choose whose status it writes), body normalization, the feed table."""

from __future__ import annotations

from typing import Any

import pytest

from tests.watch_k8s.conftest import ingress, ingress_class
from xdsbus.model.k8s import K8sIngress, decode_object
from xdsbus.translate.ingress_class import HIGRESS_CONTROLLER, class_facts, default_class, ignored_reason
from xdsbus_watch_file.manifests import object_key
from xdsbus_watch_k8s.normalize import normalize
from xdsbus_watch_k8s.resources import RESOURCES, feeds
from xdsbus_watch_k8s.status_writer import load_balancer_ingress

ANNOTATION = "kubernetes.io/ingress.class"


def classes(*objs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {obj["metadata"]["name"]: obj for obj in objs}


class IngressClassFilter:
    """The rule over raw bodies, as the watcher holds them."""

    def __init__(self, wanted: str) -> None:
        self.wanted = wanted

    def matches(self, body: dict[str, Any], class_bodies: dict[str, dict[str, Any]]) -> bool:
        facts = {name: class_facts(name, obj) for name, obj in class_bodies.items()}
        return ignored_reason(decode_object(body, K8sIngress), facts, self.wanted) is None


@pytest.mark.parametrize(
    ("wanted", "class_name", "annotation", "expected"),
    [
        # "" serves everything.
        ("", "nginx", None, True),
        ("", None, None, True),
        # The default `higress`: by spec.ingressClassName or by annotation, exactly.
        ("higress", "higress", None, True),
        ("higress", "nginx", None, False),
        ("higress", None, None, False),
        ("higress", None, "higress", True),
        ("higress", None, "nginx", False),
        ("higress", None, "", False),
        # The annotation, when present, decides over spec.ingressClassName (as in Higress).
        ("higress", "higress", "nginx", False),
        ("higress", "nginx", "higress", True),
        # `nginx`: class nginx, or no class at all.
        ("nginx", "nginx", None, True),
        ("nginx", None, None, True),
        ("nginx", "", None, True),
        ("nginx", None, "", True),
        ("nginx", None, "nginx", True),
        ("nginx", "higress", None, False),
        ("nginx", None, "higress", False),
        # Any other class: exact match.
        ("internal", "internal", None, True),
        ("internal", "higress", None, False),
    ],
)
def test_class_rule(wanted: str, class_name: str | None, annotation: str | None, expected: bool) -> None:
    obj = ingress(
        "i", class_name=class_name, annotations={ANNOTATION: annotation} if annotation is not None else None
    )
    assert IngressClassFilter(wanted).matches(obj, {}) is expected


def test_class_objects_default_and_controller() -> None:
    unclassed = ingress("i", class_name=None)
    higress = IngressClassFilter("higress")
    nginx = IngressClassFilter("nginx")
    # The default IngressClass stands in for a missing class...
    assert higress.matches(unclassed, classes(ingress_class("higress", default=True)))
    assert not higress.matches(
        unclassed, classes(ingress_class("higress"), ingress_class("other", default=True))
    )
    # ...so `nginx` no longer takes class-less Ingresses once another class is the default.
    assert not nginx.matches(unclassed, classes(ingress_class("higress", default=True)))
    assert nginx.matches(unclassed, classes(ingress_class("nginx", default=True)))
    # An IngressClass handled by Higress' controller is ours under any name, default or named.
    ours = ingress_class("gw", controller=HIGRESS_CONTROLLER)
    assert higress.matches(ingress("i", class_name="gw"), classes(ours))
    assert not higress.matches(ingress("i", class_name="gw"), classes(ingress_class("gw")))
    assert higress.matches(
        unclassed, classes(ingress_class("gw", default=True, controller=HIGRESS_CONTROLLER))
    )
    # The annotation still decides first.
    assert not higress.matches(
        ingress("i", class_name="gw", annotations={ANNOTATION: "nginx"}), classes(ours)
    )


def test_default_class_newest_wins() -> None:
    old = ingress_class("old", default=True)
    new = ingress_class("new", default=True)
    old["metadata"]["creationTimestamp"] = "2024-01-01T00:00:00Z"
    new["metadata"]["creationTimestamp"] = "2025-01-01T00:00:00Z"
    facts = {name: class_facts(name, obj) for name, obj in classes(old, new).items()}
    assert default_class(facts) == "new"
    assert default_class({"a": class_facts("a", ingress_class("a"))}) is None


def test_normalize_drops_noise_and_keeps_identity() -> None:
    obj: dict[str, Any] = {
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "resourceVersion": "1234",
            "selfLink": "/api/v1/namespaces/shop/services/web",
            "managedFields": [{"manager": "kubectl"}],
            "labels": {"app": "web"},
            "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{...}",
                "higress.io/keep": "yes",
            },
        },
        "spec": {"ports": [{"port": 80}]},
        "status": {"loadBalancer": {}},
    }
    body = normalize(obj, "v1", "Service")
    assert body == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "web",
            "namespace": "shop",
            "uid": "u-1",
            "generation": 3,
            "creationTimestamp": "2025-01-01T00:00:00Z",
            "labels": {"app": "web"},
            "annotations": {"higress.io/keep": "yes"},
        },
        "spec": {"ports": [{"port": 80}]},
    }
    # Only the last-applied annotation: no empty annotations left behind.
    obj["metadata"]["annotations"] = {"kubectl.kubernetes.io/last-applied-configuration": "{}"}
    assert "annotations" not in normalize(obj, "v1", "Service")["metadata"]
    assert "status" in obj and "managedFields" in obj["metadata"]  # the input is left alone


def test_keys_follow_watch_file() -> None:
    # The same object gets the same key from a file and from the cluster.
    for resource in RESOURCES:
        namespace = "ns" if resource.namespaced else None
        assert resource.key(namespace, "x") == object_key(resource.kind, "x", namespace)


def test_feed_table_scoping() -> None:
    def where(table: list[Any], kind: str) -> list[str | None]:
        return [f.namespace for f in table if f.kind == kind]

    everywhere = feeds("", "higress-system")
    assert where(everywhere, "Ingress") == [None]
    assert where(everywhere, "Secret") == [None]
    assert where(everywhere, "ConfigMap") == ["higress-system", "higress-system"]
    assert where(everywhere, "WasmPlugin") == ["higress-system"]
    assert where(everywhere, "GatewayClass") == [None]
    one = feeds("team-a", "higress-system")
    assert where(one, "Ingress") == ["team-a"]
    assert where(one, "HTTPRoute") == ["team-a"]
    assert where(one, "Secret") == ["team-a", "higress-system"]
    assert where(feeds("higress-system", "higress-system"), "Secret") == ["higress-system"]


def test_load_balancer_entries() -> None:
    assert load_balancer_ingress(["10.0.0.1", "gw.example.com", "fd00::1"]) == [
        {"ip": "10.0.0.1"},
        {"hostname": "gw.example.com"},
        {"ip": "fd00::1"},
    ]
