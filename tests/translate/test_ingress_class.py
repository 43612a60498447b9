"""The ingress class is the builder's decision (docs/design.md §4): every Ingress and IngressClass arrives
as a fact, and the translator serves only the Ingresses of its class, reporting the others ignored."""

from __future__ import annotations

from typing import Any

from tests.support.objects import service
from tests.translate.translator_harness import SOURCE, Harness, ingress_body
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import ROUTE
from xdsbus.events import Event, Op
from xdsbus.translate.ingress_class import HIGRESS_CONTROLLER
from xdsbus.translate.settings import TranslatorSettings

HIGRESS = TranslatorSettings(ingress_class="higress")


def classed(name: str, host: str, class_name: str | None, annotation: str | None = None) -> dict[str, Any]:
    body = ingress_body(
        name,
        [(host, [("/", "web", 80)])],
        annotations={"kubernetes.io/ingress.class": annotation} if annotation is not None else None,
    )
    if class_name is not None:
        body["spec"]["ingressClassName"] = class_name
    return body


def put_class(
    h: Harness, name: str, *, controller: str = "k8s.io/ingress-nginx", default: bool = False
) -> None:
    """An IngressClass, keyed by its bare name as watchers key cluster-scoped kinds."""
    annotations = {"ingressclass.kubernetes.io/is-default-class": "true"} if default else {}
    body = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "IngressClass",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"controller": controller},
    }
    h.seq += 1
    h.update([Event(source=SOURCE, kind="IngressClass", key=name, op=Op.UPSERT, rev=str(h.seq), body=body)])


def served_hosts(h: Harness) -> set[str]:
    if h.body(ROUTE, "http.80") is None:
        return set()
    return {d for vh in h.route_config().virtual_hosts for d in vh.domains}


def test_only_the_served_class_is_translated_and_the_rest_is_reported_ignored() -> None:
    h = Harness(settings=HIGRESS)
    h.put(
        service("web"),
        classed("ours", "ours.example.com", "higress"),
        classed("annotated", "annotated.example.com", None, annotation="higress"),
        classed("theirs", "theirs.example.com", "nginx"),
        classed("unclassed", "unclassed.example.com", None),
    )
    assert served_hosts(h) == {"ours.example.com", "annotated.example.com"}
    for key in ("default/ours", "default/annotated"):
        status = h.status("Ingress", key)
        assert status is not None and status.state == Verdict.ACCEPTED
    theirs = h.status("Ingress", "default/theirs")
    assert theirs is not None and theirs.state == Verdict.IGNORED
    assert theirs.reason == (
        "Ingress default/theirs: ignored: class 'nginx' (spec.ingressClassName) is not 'higress' and its "
        f"IngressClass is not handled by {HIGRESS_CONTROLLER}"
    )
    unclassed = h.status("Ingress", "default/unclassed")
    assert unclassed is not None and unclassed.state == Verdict.IGNORED
    assert "no ingress class and no default IngressClass" in unclassed.reason
    h.assert_matches_full_build()


def test_switching_class_starts_and_stops_serving() -> None:
    h = Harness(settings=HIGRESS)
    h.put(service("web"), classed("site", "site.example.com", "nginx"))
    assert served_hosts(h) == set()
    h.put(classed("site", "site.example.com", "higress"))
    assert served_hosts(h) == {"site.example.com"}
    h.put(classed("site", "site.example.com", "nginx"))
    assert served_hosts(h) == set()
    status = h.status("Ingress", "default/site")
    assert status is not None and status.state == Verdict.IGNORED
    h.assert_matches_full_build()


def test_ingress_class_objects_decide_again() -> None:
    h = Harness(settings=HIGRESS)
    h.put(service("web"), classed("unclassed", "u.example.com", None), classed("gw", "gw.example.com", "gw"))
    assert served_hosts(h) == set()
    # The default class stands in for a missing class; a class of Higress' controller is ours by any name.
    put_class(h, "higress", controller=HIGRESS_CONTROLLER, default=True)
    assert served_hosts(h) == {"u.example.com"}
    put_class(h, "gw", controller=HIGRESS_CONTROLLER)
    assert served_hosts(h) == {"u.example.com", "gw.example.com"}
    h.assert_matches_full_build()
    # The class leaves Higress' controller; the default goes away.
    put_class(h, "gw")
    h.update([Event(source=SOURCE, kind="IngressClass", key="higress", op=Op.DELETE)])
    assert served_hosts(h) == set()
    gw_class = h.status("IngressClass", "gw")
    assert gw_class is not None and gw_class.state == Verdict.IGNORED
    assert h.status("IngressClass", "higress") is None
    h.assert_matches_full_build()


def test_an_empty_class_serves_every_ingress_and_names_no_class_in_the_ledger() -> None:
    h = Harness(settings=TranslatorSettings())
    h.put(service("web"), classed("a", "a.example.com", "nginx"), classed("b", "b.example.com", None))
    assert served_hosts(h) == {"a.example.com", "b.example.com"}
    # Versions recorded before the builder decided classes name none: a replay serves what they served.
    assert TranslatorSettings().describe() == "xdsbus-translate/3 http=80 https=443 route_tables=auto"
    assert TranslatorSettings.parse(TranslatorSettings().describe()).ingress_class == ""
    assert TranslatorSettings.parse(HIGRESS.describe()) == HIGRESS


def test_the_same_events_give_the_same_digest() -> None:
    def build(order: list[int]) -> str:
        h = Harness(settings=HIGRESS)
        bodies = [
            service("web"),
            classed("a", "a.example.com", "higress"),
            classed("b", "b.example.com", "nginx"),
            classed("c", "c.example.com", None),
        ]
        h.put(*[bodies[i] for i in order])
        put_class(h, "higress", controller=HIGRESS_CONTROLLER, default=True)
        return h.translator.table.digest()

    assert build([0, 1, 2, 3]) == build([3, 2, 1, 0])
