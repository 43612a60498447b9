"""spec.tls and the downstream TLS annotations into per-host TLS entries."""

from __future__ import annotations

from tests.translate.ingress_objects import N, make_ingress, origin, path, translate
from xdsbus.model.routes import DownstreamTls, TlsVersion
from xdsbus.translate.ingress_rules import HostTls


def _tls_ingress(tls: list[dict[str, object]], annotations: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return make_ingress(
        ("a.example.com", [path("/")]),
        ("B.example.com", [path("/")]),
        ("*.wild.com", [path("/")]),
        namespace="shop",
        tls=tls,
        annotations=annotations,
    )


def test_tls_hosts_get_their_secret() -> None:
    t = translate(_tls_ingress([{"hosts": ["a.example.com", "b.example.com"], "secretName": "cert"}]))
    assert t.tls == [
        HostTls(
            host="a.example.com",
            tls=DownstreamTls(cert_secret="kubernetes://shop/cert"),
            origin=origin("shop/site"),
        ),
        HostTls(
            host="b.example.com",
            tls=DownstreamTls(cert_secret="kubernetes://shop/cert"),
            origin=origin("shop/site"),
        ),
    ]
    assert t.warnings == []


def test_tls_host_must_equal_a_rule_host() -> None:
    t = translate(
        _tls_ingress([{"hosts": ["*.example.com", "x.wild.com", "*.wild.com"], "secretName": "cert"}])
    )
    assert [h.host for h in t.tls] == ["*.wild.com"]
    assert t.warnings == [
        "tls[0].hosts[0]: host *.example.com is not a rule host of this Ingress; ignored",
        "tls[0].hosts[1]: host x.wild.com is not a rule host of this Ingress; ignored",
    ]


def test_second_secret_for_a_host_is_rejected() -> None:
    t = translate(
        _tls_ingress(
            [
                {"hosts": ["a.example.com"], "secretName": "first"},
                {"hosts": ["a.example.com", "b.example.com"], "secretName": "second"},
                {"hosts": ["a.example.com"], "secretName": "first"},
            ]
        )
    )
    assert [(h.host, h.tls.cert_secret) for h in t.tls] == [
        ("a.example.com", "kubernetes://shop/first"),
        ("b.example.com", "kubernetes://shop/second"),
    ]
    assert t.warnings == [
        "tls[1]: host a.example.com already has Secret first (tls[0]); Secret second is ignored for it"
    ]


def test_tls_entry_without_secret() -> None:
    t = translate(_tls_ingress([{"hosts": ["a.example.com"]}]))
    assert t.tls == []
    assert t.warnings == ["tls[0]: no secretName; its hosts are served over plain HTTP only"]


def test_client_certificates_and_protocol_settings() -> None:
    annotations = {
        N + "auth-tls-secret": "shop/cert-cacert",
        N + "ssl-cipher": "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384",
        N + "tls-min-protocol-version": "TLSv1.2",
    }
    t = translate(_tls_ingress([{"hosts": ["a.example.com"], "secretName": "cert"}], annotations))
    assert t.tls[0].tls == DownstreamTls(
        cert_secret="kubernetes://shop/cert",
        client_ca_secret="kubernetes://shop/cert-cacert",
        min_version=TlsVersion.TLS1_2,
        cipher_suites=("ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"),
    )
    # The certificate Secret itself (its ca.crt) is accepted too, under the same SDS name.
    t = translate(
        _tls_ingress([{"hosts": ["a.example.com"], "secretName": "cert"}], {N + "auth-tls-secret": "cert"})
    )
    assert t.tls[0].tls.client_ca_secret == "kubernetes://shop/cert-cacert"


def test_auth_tls_secret_must_match_the_host_certificate() -> None:
    t = translate(
        _tls_ingress(
            [
                {"hosts": ["a.example.com"], "secretName": "cert"},
                {"hosts": ["b.example.com"], "secretName": "other"},
            ],
            {N + "auth-tls-secret": "cert"},
        )
    )
    assert [(h.host, h.tls.client_ca_secret) for h in t.tls] == [
        ("a.example.com", "kubernetes://shop/cert-cacert"),
        ("b.example.com", ""),
    ]
    assert t.warnings == [
        f'annotation {N}auth-tls-secret: "cert" '
        "must name host b.example.com's certificate Secret shop/other "
        "or shop/other-cacert; host b.example.com does not ask for client certificates"
    ]
    other_ns = translate(
        _tls_ingress(
            [{"hosts": ["a.example.com"], "secretName": "cert"}], {N + "auth-tls-secret": "elsewhere/cert"}
        )
    )
    assert other_ns.tls[0].tls.client_ca_secret == ""
    assert len(other_ns.warnings) == 1


def test_auth_tls_secret_without_tls() -> None:
    t = translate(_tls_ingress([], {N + "auth-tls-secret": "cert"}))
    assert t.tls == []
    assert t.warnings == [
        f'annotation {N}auth-tls-secret: "cert" has no effect: the Ingress serves no host over TLS'
    ]
