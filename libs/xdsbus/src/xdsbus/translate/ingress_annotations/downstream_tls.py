"""Downstream (client-facing) TLS settings (Higress downstreamtls.go, N+H).

auth-tls-secret `[namespace/]name` asks clients for a certificate signed by the CA of the host's own
certificate Secret: it must name that Secret (same namespace) or `<secret>-cacert`; either way the CA is
served under `ca_secret_name(namespace, <secret>)` (checked per host at translation). ssl-cipher is a
colon list, kept to the suites Istio accepts; tls-min/max-protocol-version are TLSv1.0 … TLSv1.3.
"""

from __future__ import annotations

import msgspec

from xdsbus.model.routes import TlsVersion
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, SecretRef, namespaced_parser

# Istio security.ValidCipherSuites (`bssl ciphers -openssl-name ALL`, without PSK).
VALID_CIPHER_SUITES = (
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
)
_VERSIONS = {
    "TLSV1.0": TlsVersion.TLS1_0,
    "TLSV1.1": TlsVersion.TLS1_1,
    "TLSV1.2": TlsVersion.TLS1_2,
    "TLSV1.3": TlsVersion.TLS1_3,
}
_VERSION_ORDER = list(_VERSIONS.values())


class DownstreamTlsSpec(msgspec.Struct, frozen=True, kw_only=True):
    client_ca: SecretRef | None = None
    cipher_suites: tuple[str, ...] = ()
    min_version: TlsVersion = TlsVersion.AUTO
    max_version: TlsVersion = TlsVersion.AUTO


def _ciphers(text: str) -> tuple[str, ...]:
    items = [c.strip() for c in text.split(":") if c.strip()]
    bad = [c for c in items if c not in VALID_CIPHER_SUITES]
    if bad:
        raise ValueError(f"has cipher suite(s) Envoy does not support: {', '.join(bad)}")
    return tuple(dict.fromkeys(items))


def _version(text: str) -> TlsVersion:
    version = _VERSIONS.get(text.upper())
    if version is None:
        raise ValueError("is not a TLS version (TLSv1.0, TLSv1.1, TLSv1.2, TLSv1.3)")
    return version


def parse_downstream_tls(r: AnnotationReader, namespace: str) -> DownstreamTlsSpec | None:
    ca = r.get("auth-tls-secret", namespaced_parser(namespace, "Secret"))
    spec = DownstreamTlsSpec(
        client_ca=None if ca is None else SecretRef(namespace=ca.value[0], name=ca.value[1], ref=r.ref(ca)),
        cipher_suites=r.value("ssl-cipher", _ciphers) or (),
        min_version=r.value("tls-min-protocol-version", _version) or TlsVersion.AUTO,
        max_version=r.value("tls-max-protocol-version", _version) or TlsVersion.AUTO,
    )
    if (
        spec.min_version is not TlsVersion.AUTO
        and spec.max_version is not TlsVersion.AUTO
        and _VERSION_ORDER.index(spec.min_version) > _VERSION_ORDER.index(spec.max_version)
    ):
        key = r.keys("tls-max-protocol-version")[0]
        r.add(key, r.annotations[key], "is lower than tls-min-protocol-version: it is ignored")
        spec = msgspec.structs.replace(spec, max_version=TlsVersion.AUTO)
    return None if spec == DownstreamTlsSpec() else spec
