"""SDS Secrets from the secret model: certificates with their keys, and CA bundles."""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2

from xdsbus.model.secrets import SecretModel


def build_secret(model: SecretModel) -> secret_pb2.Secret:
    """A Secret holding either a certificate chain and key or a trusted CA bundle, inline.

    A Secret holds one kind of material (a oneof in Envoy); the model must set exactly one.
    """
    if (model.certificate is None) == (not model.trusted_ca):
        raise ValueError(f"secret {model.name}: set exactly one of certificate and trusted_ca")
    secret = secret_pb2.Secret(name=model.name)
    if model.certificate is not None:
        secret.tls_certificate.CopyFrom(
            common_pb2.TlsCertificate(
                certificate_chain=base_pb2.DataSource(inline_bytes=model.certificate.cert_chain),
                private_key=base_pb2.DataSource(inline_bytes=model.certificate.private_key),
            )
        )
    else:
        secret.validation_context.CopyFrom(
            common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=model.trusted_ca)
            )
        )
    return secret
