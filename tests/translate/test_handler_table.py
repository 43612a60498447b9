"""The translator's kind → handler table, and handlers on their own: each folds its kinds into its index,
says what it touched, and reads other handlers only through the view it was given."""

from __future__ import annotations

import logging

import pytest

from tests.support.objects import endpoint_slice, service
from tests.translate.translator_harness import Harness, ingress_body, tls_secret
from xdsbus.contract.status import Verdict
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.model.services import ServiceModel, k8s_hostname
from xdsbus.secretbox import SecretBox
from xdsbus.translate.handlers.registries import RegistriesHandler
from xdsbus.translate.handlers.secrets import SecretsHandler
from xdsbus.translate.handlers.services import ServicesHandler
from xdsbus.translate.handlers.status_book import StatusBook
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.handlers.views import ServiceClaim
from xdsbus.translate.resource_table import ResourceTable
from xdsbus.translate.translator import Translator

SOURCE = "test/unit"
WEB = k8s_hostname("web", "default")


def _fold(state: FoldState, kind: str, key: str, body: object, source: str = SOURCE) -> ObjectRef:
    (ref,) = apply(
        state, len(state.objects) + 1, Event(source=source, kind=kind, key=key, op=Op.UPSERT, body=body)
    )
    return ref


def test_every_translated_kind_has_one_handler_folded_in_dependency_order() -> None:
    # A full build folds what a kind reads before it: services before registries' claims are rebuilt,
    # Secrets before the Ingresses and Gateways that use them.
    assert Translator().kinds == (
        "ConfigMap",
        "Service",
        "EndpointSlice",
        "Endpoints",
        "RegistryService",
        "McpBridge",
        "Secret",
        "Http2Rpc",
        "IngressClass",
        "Ingress",
        "GatewayClass",
        "Gateway",
        "HTTPRoute",
        "GRPCRoute",
        "ReferenceGrant",
        "Namespace",
        "WasmPlugin",
    )


# Every kind a watcher publishes has a handler now; one of no source stands for a future one.
@pytest.mark.parametrize("kind", ["PodDisruptionBudget"])
def test_a_kind_no_handler_translates_is_logged_once_and_gets_no_status(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness()
    h.put(ingress_body("web", [("a.example.com", [("/", "web", 80)])]))
    before = {key: res.sha256 for key, res in h.translator.table.items()}
    body = {"kind": kind, "metadata": {"name": "x", "namespace": "default"}}
    with caplog.at_level(logging.INFO, logger="xdsbus.translate.translator"):
        h.put(body)
        h.put(body)
    assert [r.getMessage() for r in caplog.records] == [
        f"no handler translates kind {kind}: its objects are folded and not translated"
    ]
    assert {key: res.sha256 for key, res in h.translator.table.items()} == before
    assert h.status(kind, "default/x") is None
    h.assert_matches_full_build()


def test_the_services_handler_touches_the_hostnames_of_what_it_folds() -> None:
    state = FoldState()
    table = ResourceTable()
    handler = ServicesHandler(table, StatusBook())
    assert handler.fold(state, _fold(state, "Service", "default/web", service("web"))) == Touched(
        hosts=frozenset({WEB})
    )
    assert handler.regenerate(WEB) is True
    assert handler.model(WEB) is not None
    slice_ref = _fold(state, "EndpointSlice", "default/web-1", endpoint_slice("web", ["10.0.0.1"]))
    assert handler.fold(state, slice_ref) == Touched(hosts=frozenset({WEB}))
    # New endpoints leave the model as it was: nothing that reads the model is touched.
    assert handler.regenerate(WEB) is False
    assert len(table) == 2


class _Claims:
    """A ServiceClaims view that records what a handler claims."""

    def __init__(self) -> None:
        self.claims: dict[ObjectRef, ServiceModel] = {}

    def claim(self, claim: ServiceClaim) -> str:
        self.claims[claim.ref] = claim.model
        return claim.model.hostname

    def release(self, ref: ObjectRef) -> str | None:
        model = self.claims.pop(ref, None)
        return None if model is None else model.hostname


def test_registries_claim_hostnames_through_their_view_alone() -> None:
    state = FoldState()
    claims = _Claims()
    status = StatusBook()
    handler = RegistriesHandler(claims, status)
    bridge = {
        "kind": "McpBridge",
        "metadata": {"name": "default", "namespace": "higress-system"},
        "spec": {"registries": [{"type": "dns", "name": "api", "domain": "api.example.com", "port": 443}]},
    }
    ref = _fold(state, "McpBridge", "higress-system/default", bridge)
    touched = handler.fold(state, ref)
    assert touched.hosts == frozenset(model.hostname for model in claims.claims.values())
    assert len(claims.claims) == 1
    assert status.statuses[ref].state is Verdict.ACCEPTED
    apply(state, 9, Event(source=SOURCE, kind="McpBridge", key=ref.key, op=Op.DELETE))
    assert handler.fold(state, ref) == touched
    assert claims.claims == {}
    assert ref not in status.statuses


def test_the_secrets_handler_touches_the_sds_names_a_secret_provides() -> None:
    state = FoldState()
    box = SecretBox(b"k" * 32)
    handler = SecretsHandler(ResourceTable(), StatusBook(), box)
    sealed = box.seal(tls_secret("cert"), source=SOURCE, kind="Secret", key="default/cert")
    ref = _fold(state, "Secret", "default/cert", sealed)
    assert handler.fold(state, ref) == Touched(secrets=frozenset({"kubernetes://default/cert"}))
    assert handler.holds("kubernetes://default/cert", True)
    assert not handler.holds("kubernetes://default/cert", False)
