"""Why an object is rejected: the message of an error the translator expects, or a logged internal one."""

from __future__ import annotations

import logging

import msgspec

from xdsbus.secretbox import SecretKeyError
from xdsbus.translate.http2rpc import Http2RpcError
from xdsbus.translate.ingress_rules import IngressError
from xdsbus.translate.k8s_secrets import SecretError
from xdsbus.translate.k8s_services import ServiceError
from xdsbus.translate.registry_services import RegistryServiceError

log = logging.getLogger(__name__)

_EXPECTED_ERRORS = (
    msgspec.ValidationError,
    ServiceError,
    IngressError,
    SecretError,
    SecretKeyError,
    RegistryServiceError,
    Http2RpcError,
)


def rejection_reason(exc: Exception) -> str:
    """The rejection reason for an object. Any failure rejects the object alone (the builder must never
    crash on input); an unexpected one is also logged with its traceback, as a translator bug."""
    if isinstance(exc, _EXPECTED_ERRORS):
        return str(exc)
    log.error("translator error", exc_info=exc)
    return f"internal error: {exc!r}"
