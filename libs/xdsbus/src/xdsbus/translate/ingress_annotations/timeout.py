"""Route timeout (Higress timeout.go, H only): `higress.io/timeout`, whole seconds; 0 means none.
nginx's proxy-*-timeout annotations are not read, as in Higress."""

from __future__ import annotations

from xdsbus.translate.ingress_annotations.reader import AnnotationReader

# Anything longer is a typo, and far beyond what Envoy's Duration accepts once in milliseconds.
MAX_TIMEOUT_SECONDS = 7 * 24 * 3600


def parse_timeout_ms(r: AnnotationReader) -> int:
    """`higress.io/timeout` in milliseconds (0: no route timeout)."""
    seconds = r.integer("timeout", minimum=0, maximum=MAX_TIMEOUT_SECONDS, higress_only=True)
    return (seconds or 0) * 1000
