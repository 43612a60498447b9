"""Route timeout (Higress timeout.go, H only): `higress.io/timeout`, whole seconds; 0 means none.
nginx's proxy-*-timeout annotations are not read, as in Higress."""

from __future__ import annotations

from xdsbus.translate.ingress_annotations.reader import AnnotationReader


def parse_timeout_ms(r: AnnotationReader) -> int:
    seconds = r.integer("timeout", minimum=0, higress_only=True)
    return (seconds or 0) * 1000
