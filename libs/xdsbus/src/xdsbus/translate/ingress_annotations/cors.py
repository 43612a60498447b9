"""CORS annotations (Higress cors.go, N+H), active only with enable-cors: "true"."""

from __future__ import annotations

from urllib.parse import urlsplit

from xdsbus.model.routes import CorsPolicy, StringMatchKind
from xdsbus.translate.ingress_annotations.reader import AnnotationReader, int_range, or_default, split_list

DEFAULT_ALLOW_ORIGIN = "*"
DEFAULT_ALLOW_METHODS = "GET, PUT, POST, DELETE, PATCH, OPTIONS"
DEFAULT_ALLOW_HEADERS = (
    "DNT,X-CustomHeader,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,"
    "Content-Type,Authorization"
)
DEFAULT_MAX_AGE = 1728000


def _items(text: str) -> tuple[str, ...]:
    """Higress splitStringWithSpaceTrim: a comma list where any `*` item means just `*`."""
    items = split_list(text)
    return ("*",) if "*" in items else tuple(items)


def _origin(origin: str) -> tuple[StringMatchKind, str]:
    if origin == "*":
        return StringMatchKind.REGEX, ".*"
    if "*" not in origin:
        return StringMatchKind.EXACT, origin
    try:
        host = urlsplit(origin).netloc
    except ValueError:
        host = ""
    if not host.startswith("*.") or "*" in host[1:]:
        raise ValueError(f"has origin {origin!r}: a wildcard must be the whole first label of the host")
    # Higress: `https://*.foo.com` → `.*\.foo\.com` (the scheme is not checked).
    return StringMatchKind.REGEX, ".*" + host[1:].replace(".", "\\.")


def _origins(text: str) -> tuple[tuple[StringMatchKind, str], ...]:
    return tuple(_origin(o) for o in _items(text))


def parse_cors(r: AnnotationReader) -> CorsPolicy | None:
    if not r.has("enable-cors") or not r.boolean("enable-cors"):
        return None
    return CorsPolicy(
        allow_origins=r.value("cors-allow-origin", _origins) or _origins(DEFAULT_ALLOW_ORIGIN),
        allow_methods=r.value("cors-allow-methods", _items) or _items(DEFAULT_ALLOW_METHODS),
        allow_headers=r.value("cors-allow-headers", _items) or _items(DEFAULT_ALLOW_HEADERS),
        expose_headers=r.value("cors-expose-headers", _items) or (),
        allow_credentials=or_default(r.boolean("cors-allow-credentials"), True),
        max_age_seconds=or_default(r.value("cors-max-age", int_range(0)), DEFAULT_MAX_AGE),
    )
