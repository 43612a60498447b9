"""No object body can break the translation (README: "the builder never stops on bad input"): a body with
any field replaced by any value is translated or rejected with a reason, and the other objects still get
their resources. An exception here would stop the builder, and again on every restart."""

from __future__ import annotations

import base64
import copy
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.objects import endpoint_slice, ingress, service
from xdsbus.events import Event, Op
from xdsbus.fold.state import FoldState, ObjectRef, apply
from xdsbus.secretbox import SecretBox
from xdsbus.translate.translator import Translator
from xdsbus_dev.harness.certs import TestCA

SOURCE = "k8s/fuzz"
BOX = SecretBox(os.urandom(32))
_CA = TestCA()
_CERT = _CA.issue("foo.com")
N = "nginx.ingress.kubernetes.io/"
H = "higress.io/"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _tls_secret() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": "cert", "namespace": "default"},
        "data": {
            "tls.crt": _b64(_CERT.cert_pem),
            "tls.key": _b64(_CERT.key_pem),
            "ca.crt": _b64(_CA.cert_pem),
        },
        "stringData": {"note": "x"},
    }


def _annotated_tls_ingress() -> dict[str, Any]:
    body = ingress("t", "foo.com", "a", path="/t")
    body["spec"]["tls"] = [{"hosts": ["foo.com"], "secretName": "cert"}]
    body["metadata"]["annotations"] = {
        N + "ssl-redirect": "true",
        N + "auth-tls-secret": "cert",
        N + "load-balance": "random",
        N + "upstream-hash-by": "$request_uri",
        N + "backend-protocol": "HTTPS",
        N + "proxy-ssl-secret": "cert",
        N + "proxy-ssl-verify": "on",
        N + "default-backend": "a",
        N + "custom-http-errors": "404",
        N + "rewrite-target": "/$1",
        N + "whitelist-source-range": "10.0.0.0/8",
        H + "request-header-control-add": "x-a 1",
        N + "tls-min-protocol-version": "TLSv1.2",
    }
    return body


def _canary_ingress() -> dict[str, Any]:
    body = ingress("c", "foo.com", "a", path="/x")
    body["metadata"]["annotations"] = {N + "canary": "true", N + "canary-weight": "30"}
    return body


def _external() -> dict[str, Any]:
    body = service("a", ports=(80,))
    body["spec"].update(type="ExternalName", externalName="a.example.com")
    return body


def _v1_endpoints() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "a", "namespace": "default"},
        "subsets": [{"addresses": [{"ip": "10.0.0.7"}], "ports": [{"name": "http-80", "port": 8080}]}],
    }


def _named_port_ingress() -> dict[str, Any]:
    body = ingress("n", "foo.com", "a")
    body["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] = {"name": "http-80"}
    body["spec"]["defaultBackend"] = {"service": {"name": "a", "port": {"number": 80}}}
    return body


SEEDS: list[tuple[str, str, dict[str, Any]]] = [
    ("Service", "default/a", service("a", ports=(80, 8080))),
    ("Service", "default/ext", _external()),
    ("EndpointSlice", "default/a-1", endpoint_slice("a", ["10.0.0.1", "10.0.0.2"])),
    ("Endpoints", "default/a", _v1_endpoints()),
    ("Ingress", "default/i", ingress("i", "foo.com", "a", path="/x")),
    ("Ingress", "default/n", _named_port_ingress()),
    ("Ingress", "default/t", _annotated_tls_ingress()),
    ("Ingress", "default/c", _canary_ingress()),
    # Plain (as a source without a key would send it) and sealed: the envelope is fuzzed too.
    ("Secret", "default/cert", _tls_secret()),
    ("Secret", "default/sealed", BOX.seal(_tls_secret(), source=SOURCE, kind="Secret", key="default/sealed")),
]

# Any int an event can carry: msgpack holds -2**63 .. 2**64-1, and a body is folded as its msgpack.
MSGPACK_INTS = st.integers(min_value=-(2**63), max_value=2**64 - 1)
ODD_INTS = st.one_of(st.sampled_from([0, -1, 65536, 2**32, 2**64 - 1, -(2**63)]), MSGPACK_INTS)
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from([0, -1, 65536, 2**32, 2**63 - 1, -(2**63)]),
    MSGPACK_INTS,
    st.floats(allow_nan=True),
    st.sampled_from(["", "abc", "*", "/", "a..b", "ü", " x ", "Exact", "Prefix", "ExternalName", "UDP"]),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
    st.lists(st.integers(-2, 70000), max_size=2),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf of a body (a value that could be replaced)."""
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _paths(v, (*prefix, k))]
    if isinstance(node, list) and node:
        return [p for i, v in enumerate(node) for p in _paths(v, (*prefix, i))]
    return [prefix]


def _replace(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(body)
    node: Any = out
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return out


def _get(body: dict[str, Any], path: tuple[Any, ...]) -> Any:
    node: Any = body
    for step in path:
        node = node[step]
    return node


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str, dict[str, Any]]:
    kind, key, body = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 2))):
        paths = _paths(body)
        numbers = [p for p in paths if type(_get(body, p)) is int]
        if numbers and draw(st.booleans()):
            # Ports and the like: numbers out of any sensible range.
            body = _replace(body, draw(st.sampled_from(numbers)), draw(ODD_INTS))
            continue
        path = draw(st.sampled_from(paths))
        if draw(st.integers(0, 4)) == 0 and len(path) > 1:
            path = path[:-1]  # sometimes a whole object or list instead
        body = _replace(body, path, draw(ODD_VALUES))
    return kind, key, body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=mutated(), order=st.booleans())
def test_any_broken_body_is_translated_or_rejected_never_raises(
    bad: tuple[str, str, dict[str, Any]], order: bool
) -> None:
    kind, key, body = bad
    good = _good(tuple({k for k, _, _ in SEEDS}))
    broken = [Event(source=SOURCE, kind=kind, key=key, op=Op.UPSERT, rev="2", body=body)]
    state, translator = _run([broken, good] if order else [good, broken])
    _check(state, translator, kind, key)


def _check(state: FoldState, translator: Translator, kind: str, key: str) -> None:
    """The object got a verdict, a rejection names the object and is no translator bug, and a full
    build of the same state agrees with the incremental one."""
    status = translator.statuses[ObjectRef(kind, SOURCE, key)]
    if status.state == "rejected":
        assert status.reason.startswith(f"{kind} {key}: "), status.reason
        assert "internal error" not in status.reason, status.reason
    fresh = Translator(secret_box=BOX)
    fresh.full_build(state)
    assert fresh.table.digest() == translator.table.digest()
    assert fresh.statuses == translator.statuses


def _run(batches: list[list[Event]]) -> tuple[FoldState, Translator]:
    """Fold the events, one translator update per batch (as the builder does per debounce window)."""
    state = FoldState()
    translator = Translator(secret_box=BOX)
    translator.full_build(state)
    seq = 0
    for batch in batches:
        changed = []
        for event in batch:
            seq += 1
            changed.extend(apply(state, seq, event))
        translator.update(state, changed)  # must not raise
    return state, translator


def _good(kinds: tuple[str, ...]) -> list[Event]:
    return [
        Event(source=SOURCE, kind=k, key=f"{key}-good", op=Op.UPSERT, rev="1", body=b)
        for k, key, b in SEEDS
        if k in kinds
    ]


# -- Secret data: keys and values of every shape ------------------------------------------------------

_PEM = _CERT.cert_pem
_SECRET_VALUES = st.one_of(
    st.sampled_from(
        [
            _b64(_CERT.cert_pem),
            _b64(_CERT.key_pem),
            _b64(_CA.cert_pem),
            _b64(_PEM[: len(_PEM) // 2]),  # truncated PEM
            _b64(_PEM.replace(b"M", b"N", 3)),  # corrupted DER inside a PEM armour
            _b64(_CERT.key_pem + _PEM),
            _b64(b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
            _b64(b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"),
            _b64(b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"),
            "",
            "====",
            "not base64!",
            "aGVsbG8",  # missing padding
        ]
    ),
    st.binary(max_size=40).map(_b64),
    st.text(max_size=12),
)
_SECRET_KEYS = st.sampled_from(["tls.crt", "tls.key", "ca.crt", "cacert", "other"])


@st.composite
def secrets(draw: st.DrawFn) -> dict[str, Any]:
    body = _tls_secret()
    body["type"] = draw(st.sampled_from(["kubernetes.io/tls", "Opaque", ""]))
    body["metadata"]["name"] = draw(st.sampled_from(["cert", "cert-cacert", "x"]))
    body["data"] = draw(st.dictionaries(_SECRET_KEYS, _SECRET_VALUES, max_size=4))
    if draw(st.booleans()):
        body["stringData"] = draw(
            st.dictionaries(_SECRET_KEYS, st.one_of(st.text(max_size=8), st.just(_PEM.decode())), max_size=2)
        )
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=secrets(), sealed=st.booleans(), order=st.booleans())
def test_any_secret_data_is_used_or_rejected_never_raises(
    body: dict[str, Any], sealed: bool, order: bool
) -> None:
    broken = Event(
        source=SOURCE,
        kind="Secret",
        key="default/cert",
        op=Op.UPSERT,
        rev="2",
        body=BOX.seal(body, source=SOURCE, kind="Secret", key="default/cert") if sealed else body,
    )
    good = _good(("Service", "Ingress"))
    state, translator = _run([[broken], good] if order else [good, [broken]])
    _check(state, translator, "Secret", "default/cert")


# -- Ingress annotations: any value under any key -----------------------------------------------------

ANNOTATION_NAMES = (
    "affinity app-root auth-tls-secret backend-protocol canary canary-by-cookie canary-by-header "
    "canary-by-header-pattern canary-by-header-value canary-weight canary-weight-total "
    "cors-allow-credentials cors-allow-headers cors-allow-methods cors-allow-origin cors-expose-headers "
    "cors-max-age custom-http-errors default-backend destination enable-cors force-ssl-redirect "
    "full-path-regex ignore-path-case load-balance match-method mirror-percentage mirror-target-fqdn "
    "mirror-target-fqdn-port mirror-target-service permanent-redirect permanent-redirect-code "
    "proxy-next-upstream proxy-next-upstream-timeout proxy-next-upstream-tries proxy-ssl-name "
    "proxy-ssl-secret proxy-ssl-server-name proxy-ssl-verify rewrite-path rewrite-target "
    "session-cookie-expires session-cookie-max-age session-cookie-name session-cookie-path ssl-cipher "
    "ssl-redirect temporal-redirect timeout tls-max-protocol-version tls-min-protocol-version "
    "upstream-hash-by upstream-vhost use-regex whitelist-source-range request-header-control-add "
    "request-header-control-remove request-header-control-update response-header-control-add "
    "response-header-control-remove response-header-control-update exact-match-header-x "
    "regex-match-query-q prefix-match-pseudo-header-authority auth-type"
).split()
_ANNOTATION_KEYS = st.builds(
    lambda prefix, name: prefix + name, st.sampled_from([N, H]), st.sampled_from(ANNOTATION_NAMES)
)
_ANNOTATION_VALUES = st.one_of(
    st.sampled_from(
        [
            "true",
            "false",
            "on",
            "0",
            "-1",
            "100",
            "99999999999999999999",
            "1.5",
            "",
            " ",
            "\n",
            "a",
            "a/b",
            "default/a",
            "a:80",
            "default/a:99999",
            "/",
            "/$1",
            "/(",
            "(.*",
            "$request_uri",
            "$http_x",
            "$arg_",
            "cookie",
            "random",
            "ewma",
            "HTTPS",
            "GRPCS",
            "10.0.0.0/8",
            "::1",
            "1.2.3.4/33",
            "TLSv1.3",
            "TLSv1.0",
            "x 1\ny",
            "a.b.c 200",
            "http://x.example.com/",
            "https://",
            "404,503",
            "GET POST",
            "*",
            "\u00fc",
        ]
    ),
    st.text(max_size=10),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(annotations=st.dictionaries(_ANNOTATION_KEYS, _ANNOTATION_VALUES, min_size=1, max_size=6))
def test_any_annotations_are_applied_or_reported_never_raise(annotations: dict[str, str]) -> None:
    body = _annotated_tls_ingress()
    body["metadata"]["annotations"] = annotations
    broken = Event(source=SOURCE, kind="Ingress", key="default/t", op=Op.UPSERT, rev="2", body=body)
    state, translator = _run([_good(("Service", "Secret", "EndpointSlice")), [broken]])
    _check(state, translator, "Ingress", "default/t")
