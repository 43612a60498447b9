"""Which Ingresses this gateway serves: Higress' ingress class rule.

From `shouldProcessIngressWithClass` (pkg/ingress/kube/ingressv1/controller.go), with the wanted class
from `--ingress-class` (Higress' default `higress`):

- wanted `""`: every Ingress;
- the annotation `kubernetes.io/ingress.class`, when present, decides: wanted `nginx` takes `nginx` and
  an empty value, any other wanted class takes exactly itself;
- else `spec.ingressClassName` must equal the wanted class, or name an IngressClass object whose
  `spec.controller` is `higress.io/higress-controller` (a class claimed for Higress under another name);
- else (no class at all) the IngressClass marked default (annotation
  `ingressclass.kubernetes.io/is-default-class: "true"`) stands in, as the API server's admission would
  have set it; with no default class, wanted `nginx` takes the Ingress and any other class does not.

When several classes are marked default, the newest wins (then the first by name).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HIGRESS_CONTROLLER = "higress.io/higress-controller"
DEFAULT_INGRESS_CLASS = "higress"
NGINX = "nginx"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def default_class(classes: Mapping[str, Mapping[str, Any]]) -> str | None:
    """Name of the IngressClass marked default, or None."""
    marked = [
        (str(_mapping(obj.get("metadata")).get("creationTimestamp") or ""), name)
        for name, obj in classes.items()
        if str(_mapping(_mapping(obj.get("metadata")).get("annotations")).get(DEFAULT_CLASS_ANNOTATION, ""))
        .strip()
        .lower()
        == "true"
    ]
    if not marked:
        return None
    # Newest first (RFC 3339 timestamps sort as text), then by name.
    newest = max(stamp for stamp, _ in marked)
    return min(name for stamp, name in marked if stamp == newest)


class IngressClassFilter:
    """Decides whether an Ingress belongs to this gateway, given the IngressClass objects."""

    def __init__(self, wanted: str = DEFAULT_INGRESS_CLASS) -> None:
        self.wanted = wanted

    def matches(self, ingress: Mapping[str, Any], classes: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether `ingress` (an Ingress body) is served; `classes` maps IngressClass names to bodies."""
        wanted = self.wanted
        if not wanted:
            return True
        annotations = _mapping(_mapping(ingress.get("metadata")).get("annotations"))
        if CLASS_ANNOTATION in annotations:
            annotated = str(annotations[CLASS_ANNOTATION] or "")
            return annotated in ("", NGINX) if wanted == NGINX else annotated == wanted
        class_name = _mapping(ingress.get("spec")).get("ingressClassName")
        if not isinstance(class_name, str) or not class_name:
            class_name = default_class(classes)
            if class_name is None:
                return wanted == NGINX
        if class_name == wanted:
            return True
        controller = _mapping(_mapping(classes.get(class_name)).get("spec")).get("controller")
        return controller == HIGRESS_CONTROLLER
