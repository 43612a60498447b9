"""Which Ingresses this gateway serves: Higress' ingress class rule, decided by the builder.

Watchers publish every Ingress and IngressClass as facts (docs/design.md §4); the builder's translator
decides with the class name of its settings (`--ingress-class`, Higress' default `higress`), so a replay
decides again with the translator it runs. The rule follows Higress' `shouldProcessIngressWithClass`
(docs/higress.md §1):

- wanted `""`: every Ingress;
- the annotation `kubernetes.io/ingress.class`, when present, decides: wanted `nginx` takes `nginx` and
  an empty value, any other wanted class takes exactly itself;
- else `spec.ingressClassName` must equal the wanted class, or name an IngressClass object whose
  `spec.controller` is `higress.io/higress-controller` (a class claimed for Higress under another name);
- else (no class at all) the IngressClass marked default (annotation
  `ingressclass.kubernetes.io/is-default-class: "true"`) stands in, as the API server's admission would
  have set it; with no default class, wanted `nginx` takes the Ingress and any other class does not.

The last two points go beyond Higress, which compares names only and takes an Ingress without a class
only as `nginx`. When several classes are marked default, the newest wins (then the first by name).
IngressClass objects are read from the Ingress's own source.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from xdsbus.model.k8s import K8sIngress

HIGRESS_CONTROLLER = "higress.io/higress-controller"
DEFAULT_INGRESS_CLASS = "higress"
NGINX = "nginx"
CLASS_ANNOTATION = "kubernetes.io/ingress.class"
DEFAULT_CLASS_ANNOTATION = "ingressclass.kubernetes.io/is-default-class"


class _ClassMeta(msgspec.Struct, rename="camel"):
    name: str = ""
    annotations: dict[str, str] = {}
    creation_timestamp: str = ""


class _ClassSpec(msgspec.Struct):
    controller: str = ""


class _ClassBody(msgspec.Struct):
    metadata: _ClassMeta = msgspec.field(default_factory=_ClassMeta)
    spec: _ClassSpec = msgspec.field(default_factory=_ClassSpec)


class IngressClassFacts(msgspec.Struct, frozen=True):
    """What the rule reads of one IngressClass object."""

    name: str
    controller: str = ""
    is_default: bool = False
    created: str = ""


def class_facts(name: str, body: Any) -> IngressClassFacts:
    """The facts of an IngressClass body; a body that does not decode counts as a plain class."""
    try:
        obj = msgspec.convert(body, _ClassBody, strict=False)
    except msgspec.ValidationError:
        return IngressClassFacts(name)
    marked = obj.metadata.annotations.get(DEFAULT_CLASS_ANNOTATION, "")
    return IngressClassFacts(
        name,
        controller=obj.spec.controller,
        is_default=marked.strip().lower() == "true",
        created=obj.metadata.creation_timestamp,
    )


def default_class(classes: Mapping[str, IngressClassFacts]) -> str | None:
    """Name of the IngressClass marked default, or None."""
    marked = [(facts.created, name) for name, facts in classes.items() if facts.is_default]
    if not marked:
        return None
    # Newest first (RFC 3339 timestamps sort as text), then by name.
    newest = max(stamp for stamp, _ in marked)
    return min(name for stamp, name in marked if stamp == newest)


def ignored_reason(ingress: K8sIngress, classes: Mapping[str, IngressClassFacts], wanted: str) -> str | None:
    """None when the Ingress is served under the class `wanted`; else why it is not (for its status)."""
    if not wanted:
        return None
    annotations = ingress.metadata.annotations
    if CLASS_ANNOTATION in annotations:
        annotated = annotations[CLASS_ANNOTATION]
        if annotated in ("", NGINX) if wanted == NGINX else annotated == wanted:
            return None
        return f"annotation {CLASS_ANNOTATION} is {annotated!r}; this gateway serves class {wanted!r}"
    class_name = ingress.spec.ingress_class_name
    how = "spec.ingressClassName"
    if not class_name:
        default = default_class(classes)
        if default is None:
            if wanted == NGINX:
                return None
            return f"no ingress class and no default IngressClass; this gateway serves class {wanted!r}"
        class_name, how = default, "the default IngressClass"
    if class_name == wanted:
        return None
    facts = classes.get(class_name)
    if facts is not None and facts.controller == HIGRESS_CONTROLLER:
        return None
    return (
        f"class {class_name!r} ({how}) is not {wanted!r} and its IngressClass is not handled by "
        f"{HIGRESS_CONTROLLER}"
    )
