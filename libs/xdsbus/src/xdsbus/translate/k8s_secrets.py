"""Kubernetes Secrets into SDS secrets: a serving/client certificate and a CA bundle.

Every certificate and key is parsed before it goes anywhere near Envoy: one bad PEM would otherwise make
Envoy reject the listener or cluster using it, taking every host on that listener down with it.
"""

from __future__ import annotations

import base64
import binascii

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from xdsbus.model.k8s import ObjectMeta
from xdsbus.model.secrets import SecretModel, TlsCertificate, ca_secret_name, secret_name

TLS_CERT_KEY = "tls.crt"
TLS_KEY_KEY = "tls.key"
CA_KEYS = ("ca.crt", "cacert")
# A Secret named `<name>-cacert` is the CA bundle of `<name>` (Istio and Higress: auth-tls-secret may
# name it); its SDS name is its own name, which the CA bundle of Secret `<name>` also answers to.
CA_SECRET_SUFFIX = "-cacert"
# What Envoy loads as a certificate (Envoy ContextImpl): RSA of 2048 bits or more, ECDSA on these
# curves, Ed25519. Anything else is refused with the listener or cluster using it.
MIN_RSA_BITS = 2048
EC_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}


class SecretError(ValueError):
    """A Secret whose TLS material cannot be used; the message names the key and the reason."""


class K8sSecret(msgspec.Struct, rename="camel", kw_only=True, omit_defaults=True):
    metadata: ObjectMeta
    type: str = "Opaque"
    # Base64, as the API returns it.
    data: dict[str, str] = {}
    # Plain text, as manifests may carry it; the API server folds it into `data`.
    string_data: dict[str, str] = {}


def _value(secret: K8sSecret, key: str) -> bytes | None:
    if key in secret.string_data:
        return secret.string_data[key].encode()
    encoded = secret.data.get(key)
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SecretError(f"data[{key!r}] is not base64") from exc


def _certificates(pem: bytes, key: str) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except ValueError as exc:
        raise SecretError(f"{key} holds no PEM certificate ({exc})") from exc
    return certs


def _check_key_matches(chain: bytes, private_key: bytes) -> None:
    leaf = _certificates(chain, TLS_CERT_KEY)[0]
    try:
        key = serialization.load_pem_private_key(private_key, password=None)
    except (ValueError, TypeError) as exc:
        raise SecretError(f"{TLS_KEY_KEY} is not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise SecretError(f"{TLS_KEY_KEY}: {type(key).__name__} keys are not supported by Envoy")
    if isinstance(key, rsa.RSAPrivateKey) and key.key_size < MIN_RSA_BITS:
        raise SecretError(
            f"{TLS_KEY_KEY}: a {key.key_size}-bit RSA key is not supported by Envoy "
            f"({MIN_RSA_BITS} bits or more)"
        )
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name not in EC_CURVES:
        raise SecretError(
            f"{TLS_KEY_KEY}: ECDSA curve {key.curve.name} is not supported by Envoy "
            f"({', '.join(EC_CURVES.values())})"
        )
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    encoding = serialization.Encoding.DER
    if key.public_key().public_bytes(encoding, public) != leaf.public_key().public_bytes(encoding, public):
        raise SecretError(f"{TLS_KEY_KEY} does not match the certificate in {TLS_CERT_KEY}")


def secret_models(secret: K8sSecret) -> list[SecretModel]:
    """The SDS secrets a Kubernetes Secret provides, by SDS name order: its certificate (when it has
    tls.crt and tls.key) and its CA bundle (ca.crt, or Istio's `cacert`). Raises SecretError naming
    the key at fault; a Secret with neither yields nothing.

    The CA bundle of a Secret named `<name>-cacert` is also published under its own name, which then
    means a CA bundle (as in Istio), not its certificate."""
    meta = secret.metadata
    out: list[SecretModel] = []
    chain = _value(secret, TLS_CERT_KEY)
    private_key = _value(secret, TLS_KEY_KEY)
    certificate: TlsCertificate | None = None
    if chain is not None or private_key is not None:
        if chain is None or private_key is None:
            missing = TLS_CERT_KEY if chain is None else TLS_KEY_KEY
            raise SecretError(f"has {TLS_CERT_KEY if chain is not None else TLS_KEY_KEY} but no {missing}")
        _check_key_matches(chain, private_key)
        certificate = TlsCertificate(cert_chain=chain, private_key=private_key)
    elif secret.type == "kubernetes.io/tls":
        raise SecretError(f"type kubernetes.io/tls without {TLS_CERT_KEY} and {TLS_KEY_KEY}")
    ca: bytes | None = None
    for key in CA_KEYS:
        ca = _value(secret, key)
        if ca is not None:
            _certificates(ca, key)
            break
    own = secret_name(meta.namespace, meta.name)
    if ca is not None and meta.name.endswith(CA_SECRET_SUFFIX):
        out.append(SecretModel(name=own, trusted_ca=ca))
    elif certificate is not None:
        out.append(SecretModel(name=own, certificate=certificate))
    if ca is not None:
        out.append(SecretModel(name=ca_secret_name(meta.namespace, meta.name), trusted_ca=ca))
    return out
