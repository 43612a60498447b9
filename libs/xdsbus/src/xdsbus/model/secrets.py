"""TLS material as the translator hands it to Envoy through SDS, and the SDS names it goes by."""

from __future__ import annotations

import msgspec


class TlsCertificate(msgspec.Struct, frozen=True, kw_only=True):
    """A certificate chain and its private key, PEM."""

    cert_chain: bytes
    private_key: bytes


class SecretModel(msgspec.Struct, frozen=True, kw_only=True):
    """One SDS resource: a serving or client certificate, or a CA bundle to verify peers with."""

    name: str
    certificate: TlsCertificate | None = None
    trusted_ca: bytes = b""


def secret_name(namespace: str, name: str) -> str:
    """SDS name of a Kubernetes TLS Secret's certificate and key (Istio's `kubernetes://` scheme)."""
    return f"kubernetes://{namespace}/{name}"


def ca_secret_name(namespace: str, name: str) -> str:
    """SDS name of the CA bundle (`ca.crt`) of a Kubernetes Secret; Istio's `-cacert` suffix."""
    return f"kubernetes://{namespace}/{name}-cacert"
