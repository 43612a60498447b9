"""Ingress TLS through the translator: Secrets (sealed on the bus) become SDS secrets, hosts with a usable
certificate get an SNI filter chain and their own route configuration, and plain HTTP redirects to HTTPS
under ssl-redirect. Every scenario ends equal to a full build of its state (what a replay computes)."""

from __future__ import annotations

import base64
import datetime
import os
from typing import Any

import msgspec
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from envoy.config.route.v3 import route_components_pb2 as rc

from tests.translate.translator_harness import (
    A_CERT,
    A_CERT_ROTATED,
    B_CERT,
    CA,
    HTTP_LISTENER,
    HTTP_ROUTES,
    HTTPS_LISTENER,
    OTHER_CA,
    SOURCE,
    Harness,
    N,
    b64,
    ca_secret,
    ingress_body,
    secret_body,
    tls_secret,
)
from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET
from xdsbus.events import Event, Op
from xdsbus.secretbox import SecretBox
from xdsbus_dev.harness.certs import KeyPair

HOST = "a.example.com"
WEB = "outbound|80||web.default.svc.cluster.local"
CERT = "kubernetes://default/cert"
CERT_CA = "kubernetes://default/cert-cacert"
HTTPS_ROUTES = f"https.443.{HOST}"
MISSING = f"host {HOST}: TLS secret {CERT} not found or not usable; the host is served over plain HTTP only"


def _service(name: str = "web", port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"ports": [{"name": f"http-{port}", "port": port, "targetPort": 8080}]},
    }


def _site(
    secret: str = "cert",
    *,
    name: str = "site",
    path: str = "/",
    created: str = "2026-01-01T00:00:00Z",
    annotations: dict[str, str] | None = None,
    host: str = HOST,
) -> dict[str, Any]:
    return ingress_body(
        name,
        [(host, [(path, "web", 80)])],
        tls=[([host], secret)],
        created=created,
        annotations=annotations,
    )


def _assert_http_only(h: Harness) -> None:
    assert HTTPS_LISTENER not in h.names(LISTENER)
    assert h.names(ROUTE) == {HTTP_ROUTES}
    assert h.names(SECRET) == set()
    assert h.vhost(HOST).routes[0].route.cluster == WEB


def _assert_https(h: Harness, secret: str = CERT, pair: KeyPair = A_CERT) -> None:
    chains = h.chains()
    assert list(chains) == [HOST]
    rds, context = chains[HOST]
    assert rds == HTTPS_ROUTES
    assert [c.name for c in context.common_tls_context.tls_certificate_sds_secret_configs] == [secret]
    https = h.route_config(HTTPS_ROUTES)
    assert [list(vh.domains) for vh in https.virtual_hosts] == [[HOST]]
    assert https.virtual_hosts[0].routes[0].route.cluster == WEB
    published = h.secret(secret)
    assert published.tls_certificate.certificate_chain.inline_bytes == pair.cert_pem
    assert published.tls_certificate.private_key.inline_bytes == pair.key_pem


# -- a certificate arriving, leaving, rotating --------------------------------------------------------


def test_secret_arriving_after_the_ingress_turns_the_host_to_https_and_leaving_turns_it_back() -> None:
    h = Harness()
    h.put(_service())
    h.put(_site())
    _assert_http_only(h)
    assert h.warnings("default/site") == [MISSING]

    h.put(tls_secret("cert"))
    _assert_https(h)
    assert h.warnings("default/site") == []
    assert h.status("Secret", "default/cert").state is Verdict.ACCEPTED  # type: ignore[union-attr]
    # The plain-HTTP virtual host still serves (no ssl-redirect asked for).
    assert h.vhost(HOST).routes[0].route.cluster == WEB
    h.assert_matches_full_build()

    h.delete("Secret", "default/cert")
    _assert_http_only(h)
    assert h.warnings("default/site") == [MISSING]
    assert h.status("Secret", "default/cert") is None
    h.assert_matches_full_build()


def test_secret_and_ingress_in_one_update_in_either_order() -> None:
    for bodies in ((_site(), tls_secret("cert")), (tls_secret("cert"), _site())):
        h = Harness()
        h.put(_service())
        h.put(*bodies)
        _assert_https(h)
        h.assert_matches_full_build()


def test_rotation_changes_the_secret_resource_alone() -> None:
    h = Harness()
    h.put(_service(), _site(), tls_secret("cert"))
    h.commit()
    listener = h.body(LISTENER, HTTPS_LISTENER)
    routes = h.body(ROUTE, HTTPS_ROUTES)

    h.put(tls_secret("cert", A_CERT_ROTATED))
    changes = h.commit()
    assert [key.name for key, _ in changes.changed] == [CERT]
    assert changes.removed == []
    assert h.body(LISTENER, HTTPS_LISTENER) == listener
    assert h.body(ROUTE, HTTPS_ROUTES) == routes
    _assert_https(h, pair=A_CERT_ROTATED)
    h.assert_matches_full_build()

    # The same content sealed again (a resync: another nonce, same revision) changes nothing.
    h.put(tls_secret("cert", A_CERT_ROTATED))
    assert not h.commit()


def test_an_unreferenced_secret_is_not_published() -> None:
    h = Harness()
    h.put(_service(), tls_secret("unused"), _site("cert"), tls_secret("cert"))
    assert h.names(SECRET) == {CERT}
    assert h.status("Secret", "default/unused").state is Verdict.ACCEPTED  # type: ignore[union-attr]
    # Once nothing references it, the certificate leaves too; the Secret object is still accepted.
    h.delete("Ingress", "default/site")
    assert h.names(SECRET) == set()
    assert h.status("Secret", "default/cert").state is Verdict.ACCEPTED  # type: ignore[union-attr]
    h.assert_matches_full_build()


# -- Secrets that cannot be used ----------------------------------------------------------------------


def _self_signed(key: Any) -> KeyPair:
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return KeyPair(cert.public_bytes(serialization.Encoding.PEM), key_pem)


def _bad_secrets() -> list[tuple[str, dict[str, Any], str]]:
    """(case, Secret body, what the reason must say)."""
    pem = A_CERT.cert_pem
    rsa_1024 = _self_signed(rsa.generate_private_key(65537, 1024))
    k1 = _self_signed(ec.generate_private_key(ec.SECP256K1()))
    return [
        (
            "key of another certificate",
            tls_secret("cert", KeyPair(pem, B_CERT.key_pem)),
            "tls.key does not match the certificate in tls.crt",
        ),
        (
            "certificate not base64",
            secret_body("cert", {"tls.crt": "not base64!", "tls.key": b64(A_CERT.key_pem)}),
            "data['tls.crt'] is not base64",
        ),
        (
            "certificate not PEM",
            secret_body("cert", {"tls.crt": b"hello", "tls.key": A_CERT.key_pem}),
            "tls.crt holds no PEM certificate",
        ),
        (
            "key not PEM",
            secret_body("cert", {"tls.crt": pem, "tls.key": b"-----BEGIN PRIVATE KEY-----\nAAAA\n"}),
            "tls.key is not an unencrypted PEM private key",
        ),
        ("no key", secret_body("cert", {"tls.crt": pem}), "has tls.crt but no tls.key"),
        ("tls type, empty", secret_body("cert", {}), "type kubernetes.io/tls without tls.crt and tls.key"),
        (
            "bad CA bundle",
            tls_secret("cert", ca=b"garbage"),
            "ca.crt holds no PEM certificate",
        ),
        ("RSA 1024", tls_secret("cert", rsa_1024), "tls.key: a 1024-bit RSA key is not supported by Envoy"),
        ("secp256k1", tls_secret("cert", k1), "tls.key: ECDSA curve secp256k1 is not supported by Envoy"),
        ("data not a map", {**secret_body("cert", {}), "data": ["x"]}, "Expected `object`, got `array`"),
    ]


BAD_SECRETS = _bad_secrets()


@pytest.mark.parametrize(("body", "reason"), [c[1:] for c in BAD_SECRETS], ids=[c[0] for c in BAD_SECRETS])
def test_a_bad_secret_edit_is_rejected_naming_the_key_and_provides_nothing(
    body: dict[str, Any], reason: str
) -> None:
    """What a rejected edit leaves published must not depend on the versions before it: a replay or a
    restart builds from the current objects alone. So the certificate is withdrawn (the host is served
    over plain HTTP, with the warning) until a good version arrives."""
    h = Harness()
    h.put(_service(), _site(), tls_secret("cert"))
    _assert_https(h)

    h.put(body)
    status = h.status("Secret", "default/cert")
    assert status is not None and status.state is Verdict.REJECTED
    assert status.reason.startswith("Secret default/cert: "), status.reason
    assert reason in status.reason
    assert "internal error" not in status.reason
    _assert_http_only(h)
    assert h.warnings("default/site") == [MISSING]
    h.assert_matches_full_build()

    h.put(tls_secret("cert", A_CERT_ROTATED))
    _assert_https(h, pair=A_CERT_ROTATED)
    assert h.status("Secret", "default/cert").state is Verdict.ACCEPTED  # type: ignore[union-attr]
    h.assert_matches_full_build()


def test_a_builder_without_a_key_rejects_sealed_secrets_with_a_clear_reason() -> None:
    h = Harness(secret_box=None, seal=SecretBox(os.urandom(32)))
    h.put(_service(), _site(), tls_secret("cert"))
    status = h.status("Secret", "default/cert")
    assert status is not None and status.state is Verdict.REJECTED
    assert status.reason == (
        "Secret default/cert: the builder has no secret key to open it (XDSBUS_SECRET_KEY)"
    )
    _assert_http_only(h)
    assert h.warnings("default/site") == [MISSING]
    h.assert_matches_full_build()


def test_a_secret_sealed_with_another_key_is_rejected() -> None:
    h = Harness(seal=SecretBox(os.urandom(32)))
    h.put(_service(), _site(), tls_secret("cert"))
    status = h.status("Secret", "default/cert")
    assert status is not None and status.state is Verdict.REJECTED
    assert "sealed with key" in status.reason and "the keyring" in status.reason
    _assert_http_only(h)
    h.assert_matches_full_build()


def test_a_tampered_or_mangled_sealed_body_is_rejected() -> None:
    h = Harness()
    assert h.box is not None
    # Bytes fields as base64 text, as msgspec.to_builtins makes them.
    sealed = h.box.seal(tls_secret("cert"), source=SOURCE, kind="Secret", key="default/cert")
    ct = base64.b64decode(sealed["ct"])
    tampered = {**sealed, "ct": b64(bytes([ct[0] ^ 1]) + ct[1:])}
    for body, reason in (
        (tampered, "Secret body failed authentication"),
        ({**sealed, "nonce": ""}, "Secret body cannot be opened"),
        ({**sealed, "ct": 5}, "Secret body is not sealed"),
    ):
        h.put(tls_secret("cert"))  # a good one first
        h.update([Event(source=SOURCE, kind="Secret", key="default/cert", op=Op.UPSERT, rev="x", body=body)])
        status = h.status("Secret", "default/cert")
        assert status is not None and status.state is Verdict.REJECTED
        assert reason in status.reason and "internal error" not in status.reason, status.reason
        h.assert_matches_full_build()


def test_a_plain_secret_body_is_rejected() -> None:
    """Watchers seal every Secret (docs/design.md §4): a plain body is refused, naming the object."""
    h = Harness()
    h.put(_service(), _site())
    h.put(tls_secret("cert"), sealed=False)
    status = h.status("Secret", "default/cert")
    assert status is not None and status.state is Verdict.REJECTED
    assert (
        status.reason
        == "Secret default/cert: Secret body is not sealed; watchers seal every Secret they publish"
    )
    _assert_http_only(h)
    h.assert_matches_full_build()


def test_a_ca_only_secret_is_no_certificate() -> None:
    h = Harness()
    h.put(_service(), _site("bundle"), ca_secret("bundle"))
    assert h.status("Secret", "default/bundle").state is Verdict.ACCEPTED  # type: ignore[union-attr]
    assert HTTPS_LISTENER not in h.names(LISTENER)
    assert h.names(SECRET) == set()
    assert h.warnings("default/site") == [
        f"host {HOST}: TLS secret kubernetes://default/bundle not found or not usable; "
        "the host is served over plain HTTP only"
    ]
    h.assert_matches_full_build()


# -- who serves a host -------------------------------------------------------------------------------


def test_two_ingresses_with_tls_for_one_host_older_wins_until_deleted() -> None:
    h = Harness()
    older = _site("old-cert", name="older", path="/old", created="2025-01-01T00:00:00Z")
    newer = _site("new-cert", name="newer", path="/new", created="2026-01-01T00:00:00Z")
    h.put(_service(), tls_secret("old-cert"), tls_secret("new-cert", A_CERT_ROTATED))
    h.put(newer)
    _assert_https(h, "kubernetes://default/new-cert", A_CERT_ROTATED)
    h.put(older)
    _assert_https(h, "kubernetes://default/old-cert")
    # The loser's certificate is no longer referenced, so no longer published.
    assert h.names(SECRET) == {"kubernetes://default/old-cert"}
    assert h.warnings("default/newer") == [
        f"host {HOST}: TLS is already configured by Ingress default/older (older wins)"
    ]
    assert h.warnings("default/older") == []
    # Both Ingresses' routes serve over HTTPS.
    paths = [r.match.path_separated_prefix for r in h.vhost(HOST, HTTPS_ROUTES).routes]
    assert sorted(paths) == ["/new", "/old"]
    h.assert_matches_full_build()

    h.delete("Ingress", "default/older")
    _assert_https(h, "kubernetes://default/new-cert", A_CERT_ROTATED)
    assert h.names(SECRET) == {"kubernetes://default/new-cert"}
    assert h.warnings("default/newer") == []
    h.assert_matches_full_build()


def test_the_oldest_ingress_decides_even_while_its_secret_is_missing() -> None:
    h = Harness()
    h.put(_service(), tls_secret("new-cert"))
    h.put(_site("old-cert", name="older", path="/old", created="2025-01-01T00:00:00Z"))
    h.put(_site("new-cert", name="newer", path="/new"))
    assert HTTPS_LISTENER not in h.names(LISTENER)
    assert h.names(SECRET) == set()
    assert h.warnings("default/older") == [
        f"host {HOST}: TLS secret kubernetes://default/old-cert not found or not usable; "
        "the host is served over plain HTTP only"
    ]
    assert h.warnings("default/newer") == [
        f"host {HOST}: TLS is already configured by Ingress default/older (older wins)"
    ]
    h.put(tls_secret("old-cert"))
    _assert_https(h, "kubernetes://default/old-cert")
    assert h.warnings("default/older") == []
    h.assert_matches_full_build()


def test_two_hosts_two_chains_and_the_listener_goes_with_the_last() -> None:
    h = Harness()
    b_host = "b.example.com"
    h.put(_service(), tls_secret("cert"), tls_secret("b-cert", B_CERT))
    h.put(_site(), _site("b-cert", name="b", host=b_host))
    chains = h.chains()
    assert list(chains) == [HOST, b_host]
    assert chains[b_host][0] == f"https.443.{b_host}"
    assert h.names(SECRET) == {CERT, "kubernetes://default/b-cert"}
    h.delete("Ingress", "default/site")
    assert list(h.chains()) == [b_host]
    assert h.names(ROUTE) == {HTTP_ROUTES, f"https.443.{b_host}"}
    h.delete("Secret", "default/b-cert")
    assert h.names(LISTENER) == {HTTP_LISTENER}
    assert h.names(ROUTE) == {HTTP_ROUTES}
    h.assert_matches_full_build()


def test_secret_provided_by_two_sources_the_first_ref_wins_and_the_other_takes_over() -> None:
    h = Harness()
    h.put(_service(), _site())
    assert h.box is not None
    # Sealed for the other source: a body sealed for one object does not open as another's.
    sealed = h.box.seal(
        tls_secret("cert", A_CERT_ROTATED), source="test/zz", kind="Secret", key="default/cert"
    )
    second = msgspec.structs.replace(h.event(tls_secret("cert"), sealed=False), source="test/zz", body=sealed)
    h.update([h.event(tls_secret("cert")), second])
    _assert_https(h)  # source "test/unit" sorts first
    h.delete("Secret", "default/cert")
    _assert_https(h, pair=A_CERT_ROTATED)
    h.assert_matches_full_build()


# -- client certificates -----------------------------------------------------------------------------


def test_client_ca_is_published_only_while_an_ingress_asks_for_client_certificates() -> None:
    h = Harness()
    h.put(_service(), tls_secret("cert", ca=CA.cert_pem), _site())
    assert h.names(SECRET) == {CERT}
    context = h.chains()[HOST][1]
    assert not context.HasField("require_client_certificate")

    h.put(_site(annotations={N + "auth-tls-secret": "cert"}))
    assert h.names(SECRET) == {CERT, CERT_CA}
    context = h.chains()[HOST][1]
    assert context.require_client_certificate.value
    assert context.common_tls_context.validation_context_sds_secret_config.name == CERT_CA
    assert h.secret(CERT_CA).validation_context.trusted_ca.inline_bytes == CA.cert_pem
    h.assert_matches_full_build()

    h.put(_site())
    assert h.names(SECRET) == {CERT}
    h.assert_matches_full_build()


def test_client_ca_from_a_separate_cacert_secret() -> None:
    """Higress: auth-tls-secret may name `<certificate Secret>-cacert`, a Secret holding ca.crt; it
    answers to its own name, ahead of the certificate Secret's own ca.crt (Istio's lookup order)."""
    h = Harness()
    h.put(_service(), tls_secret("cert"), _site(annotations={N + "auth-tls-secret": "cert-cacert"}))
    assert h.warnings("default/site") == [
        f"host {HOST}: TLS secret {CERT_CA} not found or not usable; the host is served over plain HTTP only"
    ]
    h.put(ca_secret("cert-cacert"))
    assert h.warnings("default/site") == []
    assert h.names(SECRET) == {CERT, CERT_CA}
    assert h.chains()[HOST][1].common_tls_context.validation_context_sds_secret_config.name == CERT_CA
    assert h.secret(CERT_CA).validation_context.trusted_ca.inline_bytes == CA.cert_pem

    # The certificate Secret's own ca.crt does not override the -cacert Secret ...
    h.put(tls_secret("cert", ca=OTHER_CA.cert_pem))
    assert h.secret(CERT_CA).validation_context.trusted_ca.inline_bytes == CA.cert_pem
    h.assert_matches_full_build()
    # ... and takes over when it goes.
    h.delete("Secret", "default/cert-cacert")
    assert h.secret(CERT_CA).validation_context.trusted_ca.inline_bytes == OTHER_CA.cert_pem
    h.assert_matches_full_build()


def test_a_host_waiting_for_its_client_ca_publishes_no_secret() -> None:
    h = Harness()
    h.put(_service(), tls_secret("cert"), _site(annotations={N + "auth-tls-secret": "cert"}))
    # The certificate exists, but the host is served over plain HTTP until its CA bundle exists:
    # nothing references the certificate, so it is not published.
    assert HTTPS_LISTENER not in h.names(LISTENER)
    assert h.names(SECRET) == set()
    assert h.warnings("default/site") == [
        f"host {HOST}: TLS secret {CERT_CA} not found or not usable; the host is served over plain HTTP only"
    ]
    h.put(tls_secret("cert", ca=CA.cert_pem))
    assert h.names(SECRET) == {CERT, CERT_CA}
    assert h.chains()[HOST][1].require_client_certificate.value
    h.assert_matches_full_build()


# -- ssl-redirect ------------------------------------------------------------------------------------


def _redirects(h: Harness, config: str = HTTP_ROUTES) -> list[bool]:
    return [r.HasField("redirect") for r in h.vhost(HOST, config).routes]


@pytest.mark.parametrize("annotation", ["ssl-redirect", "force-ssl-redirect"])
def test_ssl_redirect_on_a_host_with_tls(annotation: str) -> None:
    h = Harness()
    h.put(_service(), tls_secret("cert"), _site(annotations={N + annotation: "true"}))
    route = h.vhost(HOST).routes[0]
    assert route.redirect.https_redirect
    assert route.redirect.response_code == rc.RedirectAction.PERMANENT_REDIRECT
    assert not route.HasField("route")
    # Over HTTPS the route serves.
    assert _redirects(h, HTTPS_ROUTES) == [False]
    assert h.vhost(HOST, HTTPS_ROUTES).routes[0].route.cluster == WEB
    h.assert_matches_full_build()


def test_ssl_redirect_needs_a_certificate_force_ssl_redirect_does_not() -> None:
    h = Harness()
    h.put(_service(), _site(annotations={N + "ssl-redirect": "true"}))
    assert _redirects(h) == [False]  # no certificate: plain HTTP serves
    h.put(tls_secret("cert"))
    assert _redirects(h) == [True]
    h.delete("Secret", "default/cert")
    assert _redirects(h) == [False]

    h.put(_site(annotations={N + "force-ssl-redirect": "true"}))
    assert _redirects(h) == [True]  # redirected even though the host has no certificate
    assert HTTPS_LISTENER not in h.names(LISTENER)
    h.assert_matches_full_build()


def test_ssl_redirect_of_one_ingress_uses_the_tls_of_another() -> None:
    """The redirect is per route, the certificate per host: an Ingress without spec.tls asking for
    ssl-redirect redirects once another Ingress gives the host a certificate."""
    h = Harness()
    plain = ingress_body("plain", [(HOST, [("/plain", "web", 80)])], annotations={N + "ssl-redirect": "true"})
    h.put(_service(), tls_secret("cert"), plain)
    assert _redirects(h) == [False]
    h.put(_site(path="/tls"))
    routes = {r.match.path_separated_prefix: r.HasField("redirect") for r in h.vhost(HOST).routes}
    assert routes == {"/plain": True, "/tls": False}
    https = h.vhost(HOST, HTTPS_ROUTES).routes
    assert {r.match.path_separated_prefix: r.HasField("redirect") for r in https} == {
        "/plain": False,
        "/tls": False,
    }
    h.assert_matches_full_build()


# -- nothing leaks -----------------------------------------------------------------------------------


def test_deleting_the_tls_objects_leaves_the_services_resources_only() -> None:
    h = Harness()
    h.put(_service())
    baseline = h.all_names()
    h.put(
        tls_secret("cert", ca=CA.cert_pem),
        tls_secret("b-cert", B_CERT),
        _site(annotations={N + "auth-tls-secret": "cert", N + "ssl-redirect": "true"}),
        _site("b-cert", name="b", host="b.example.com", annotations={N + "load-balance": "random"}),
    )
    assert len(h.names(SECRET)) == 3 and len(h.names(ROUTE)) == 3
    for kind, key in (
        ("Ingress", "default/site"),
        ("Secret", "default/cert"),
        ("Ingress", "default/b"),
        ("Secret", "default/b-cert"),
    ):
        h.delete(kind, key)
    assert h.all_names() == baseline
    assert {("Cluster", WEB), ("ClusterLoadAssignment", WEB)} <= baseline
    assert h.names(CLUSTER) == {WEB} and h.names(ENDPOINT) == {WEB}
    h.assert_matches_full_build()
