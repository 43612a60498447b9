"""Redirect annotations (Higress redirect.go, N+H): temporal-redirect, permanent-redirect(-code),
ssl-redirect, force-ssl-redirect, app-root.

temporal-redirect is read first and wins; a URL redirect wins over the HTTPS redirect. The URL's path
replaces the request's path only when it has one (as Higress: an empty Istio `uri` keeps the path).
"""

from __future__ import annotations

import enum
from urllib.parse import urlsplit

import msgspec

from xdsbus.model.routes import Redirect
from xdsbus.translate.ingress_annotations.reader import AnnotationReader

TEMPORAL_CODE = 302
DEFAULT_PERMANENT_CODE = 301
HTTPS_REDIRECT_CODE = 308
APP_ROOT_CODE = 302


class HttpsRedirect(enum.StrEnum):
    """Whether plain-HTTP requests are redirected to HTTPS (ssl-redirect / force-ssl-redirect)."""

    NONE = ""
    # ssl-redirect: only on hosts that serve TLS.
    IF_TLS = "if_tls"
    # force-ssl-redirect: whether or not the host has a certificate here.
    ALWAYS = "always"


HTTPS_REDIRECT = Redirect(scheme="https", code=HTTPS_REDIRECT_CODE)


class RedirectSpec(msgspec.Struct, frozen=True, kw_only=True):
    # A redirect answering every request of the Ingress's routes, on every listener.
    redirect: Redirect | None = None
    # Applied on the plain-HTTP listener only (see ingress_rules.http_listener_route).
    https: HttpsRedirect = HttpsRedirect.NONE
    # Per host: an extra route `exact /` answering 302 to this path.
    app_root: str = ""


def parse_url(text: str) -> Redirect:
    """A redirect to an absolute http(s) URL (code filled in by the caller)."""
    if any(c.isspace() for c in text):
        raise ValueError("is not a URL (it contains whitespace)")
    try:
        parts = urlsplit(text)
        port = parts.port or 0
    except ValueError as exc:
        raise ValueError(f"is not a URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError("is not an http:// or https:// URL")
    if not parts.hostname:
        raise ValueError("is not a URL (it has no host)")
    path = parts.path
    if parts.query:
        path = (path or "/") + "?" + parts.query
    return Redirect(scheme=scheme, host=parts.hostname, port=port, path=path)


def _app_root(text: str) -> str:
    if not text.startswith("/") or any(c.isspace() for c in text):
        raise ValueError("is not a path (it must start with '/')")
    return text


def parse_redirect(r: AnnotationReader) -> RedirectSpec | None:
    app_root = r.value("app-root", _app_root) or ""
    https = HttpsRedirect.NONE
    if r.boolean("force-ssl-redirect"):
        https = HttpsRedirect.ALWAYS
    elif r.boolean("ssl-redirect"):
        https = HttpsRedirect.IF_TLS
    redirect: Redirect | None = None
    temporal = r.value("temporal-redirect", parse_url)
    if temporal is not None:
        redirect = msgspec.structs.replace(temporal, code=TEMPORAL_CODE)
    else:
        permanent = r.value("permanent-redirect", parse_url)
        if permanent is not None:
            code = r.integer("permanent-redirect-code", minimum=300, maximum=308)
            redirect = msgspec.structs.replace(permanent, code=code or DEFAULT_PERMANENT_CODE)
    if redirect is not None:
        https = HttpsRedirect.NONE
    spec = RedirectSpec(redirect=redirect, https=https, app_root=app_root)
    return None if spec == RedirectSpec() else spec
