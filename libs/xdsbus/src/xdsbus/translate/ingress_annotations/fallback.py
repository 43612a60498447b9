"""Fallback backend and custom error pages (Higress default_backend.go, N+H).

default-backend `[namespace/]service` (the Service must exist; its first port) is where a route's
destinations fall back when they have no healthy endpoint. custom-http-errors, a comma list of status
codes, sends backend answers with those codes to the default backend instead; without default-backend
it has no effect.
"""

from __future__ import annotations

import msgspec

from xdsbus.translate.ingress_annotations.reader import (
    AnnotationReader,
    ServiceRef,
    namespaced_parser,
    split_list,
)

MIN_ERROR_CODE = 400
MAX_ERROR_CODE = 599


class FallbackSpec(msgspec.Struct, frozen=True, kw_only=True):
    service: ServiceRef
    error_codes: tuple[int, ...] = ()


def _codes(text: str) -> tuple[int, ...]:
    codes: list[int] = []
    bad: list[str] = []
    for item in split_list(text):
        if item.isdigit() and MIN_ERROR_CODE <= int(item) <= MAX_ERROR_CODE:
            if int(item) not in codes:
                codes.append(int(item))
        else:
            bad.append(item)
    if bad:
        raise ValueError(f"has {', '.join(bad)}, not HTTP error codes ({MIN_ERROR_CODE}-{MAX_ERROR_CODE})")
    return tuple(codes)


def parse_fallback(r: AnnotationReader, namespace: str) -> FallbackSpec | None:
    backend = r.get("default-backend", namespaced_parser(namespace, "Service"))
    codes = r.get("custom-http-errors", _codes)
    if backend is None:
        if codes is not None:
            r.add(codes.key, codes.raw, "has no effect without default-backend")
        return None
    ns, name = backend.value
    return FallbackSpec(
        service=ServiceRef(namespace=ns, name=name, ref=r.ref(backend)),
        error_codes=() if codes is None else codes.value,
    )
