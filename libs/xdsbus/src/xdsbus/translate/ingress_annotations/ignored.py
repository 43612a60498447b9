"""Annotations that have no effect, each reported with the reason (docs/higress.md §1.14).

Higress reads only the keys its parsers know (`pkg/ingress/kube/annotations/*.go`) and ignores every
other one without a word: ingress-nginx snippets, external auth, body size, `limit-*` rate limits,
`proxy-*-timeout`, a key that exists only under `higress.io/` written with the nginx prefix, and the basic
auth annotations removed in Higress 2.0 (`auth.go`). Users migrating from ingress-nginx then wonder why
nothing happens; here every such key under either prefix is a problem saying why it does nothing.
"""

from __future__ import annotations

import re

from xdsbus.translate.ingress_annotations.reader import HIGRESS_PREFIX, NGINX_PREFIX, AnnotationReader

# Keys read under both prefixes ("N+H"), by the Higress parser file that reads them.
_BOTH = frozenset(
    {
        # canary.go
        "canary",
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
        "canary-weight",
        "canary-weight-total",
        # cors.go
        "enable-cors",
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-expose-headers",
        "cors-allow-credentials",
        "cors-max-age",
        # default_backend.go
        "default-backend",
        "custom-http-errors",
        # downstreamtls.go
        "auth-tls-secret",
        "ssl-cipher",
        "tls-min-protocol-version",
        "tls-max-protocol-version",
        # ignore_case.go, ip_access_control.go
        "ignore-path-case",
        "whitelist-source-range",
        # loadbalance.go
        "load-balance",
        "upstream-hash-by",
        "affinity",
        "session-cookie-name",
        "session-cookie-path",
        "session-cookie-max-age",
        "session-cookie-expires",
        # match.go reads match-method under both prefixes
        "match-method",
        # mirror.go
        "mirror-target-service",
        "mirror-percentage",
        "mirror-target-fqdn",
        "mirror-target-fqdn-port",
        # redirect.go
        "app-root",
        "temporal-redirect",
        "permanent-redirect",
        "permanent-redirect-code",
        "ssl-redirect",
        "force-ssl-redirect",
        # retry.go
        "proxy-next-upstream-tries",
        "proxy-next-upstream-timeout",
        "proxy-next-upstream",
        # rewrite.go
        "rewrite-target",
        "use-regex",
        "upstream-vhost",
        # upstreamtls.go
        "backend-protocol",
        "proxy-ssl-secret",
        "proxy-ssl-verify",
        "proxy-ssl-name",
        "proxy-ssl-server-name",
    }
)

# Keys read only as `higress.io/<key>` ("H only").
_HIGRESS_ONLY = frozenset(
    {
        "timeout",
        "destination",
        "rewrite-path",
        "full-path-regex",
        "request-header-control-add",
        "request-header-control-update",
        "request-header-control-remove",
        "response-header-control-add",
        "response-header-control-update",
        "response-header-control-remove",
        "route-limit-rpm",
        "route-limit-rps",
        "route-limit-burst-multiplier",
        "rpc-destination-name",
    }
)
_HIGRESS_ONLY_MATCH = re.compile(r"(exact|prefix|regex)-match-(header|pseudo-header|query)-.*", re.DOTALL)

# mcpserver.go (N+H): match rules for Higress's MCP server filter.
MCP_SERVER = frozenset(
    {
        "mcp-server",
        "mcp-server-match-rule-domains",
        "mcp-server-match-rule-type",
        "mcp-server-match-rule-value",
        "mcp-server-upstream-type",
        "mcp-server-enable-path-rewrite",
        "mcp-server-path-rewrite-prefix",
    }
)

_REMOVED_AUTH = frozenset({"auth-type", "auth-secret", "auth-realm", "auth-secret-type"})

_MCP_REASON = (
    "has no effect: MCP server rules configure Higress's MCP server filter (higress-config mcpServer), "
    "which xdsbus does not generate"
)

# (pattern, reason) for well-known ingress-nginx keys Higress ignores; the first match applies.
_IGNORED: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"(configuration|server|http|stream|location|auth)-snippets?"),
        "has no effect: Higress does not run nginx configuration snippets (use a WasmPlugin)",
    ),
    (
        re.compile(r"auth-.*"),
        "has no effect: Higress has no external or basic auth annotations (use the ext-auth or "
        "basic-auth Wasm plugin)",
    ),
    (
        re.compile(r"limit-.*"),
        "has no effect: Higress ignores ingress-nginx rate limits (use higress.io/route-limit-rps or "
        "higress.io/route-limit-rpm)",
    ),
    (
        re.compile(r"proxy-(connect|read|send)-timeout"),
        "has no effect: Higress ignores nginx proxy timeouts (use higress.io/timeout)",
    ),
    (
        re.compile(r"proxy-body-size|client-body-buffer-size|proxy-buffer.*|proxy-request-buffering"),
        "has no effect: Higress ignores nginx body size and buffer settings",
    ),
)


def _reason(name: str, nginx: bool) -> str | None:
    """Why `name` under this prefix has no effect, or None when some parser reads it."""
    if name in _BOTH:
        return None
    if name in _HIGRESS_ONLY or _HIGRESS_ONLY_MATCH.fullmatch(name):
        return f"has no effect: Higress reads it only as {HIGRESS_PREFIX}{name}" if nginx else None
    if name in _REMOVED_AUTH:
        return (
            "is not supported: auth annotations were removed in Higress 2.0 (use the basic-auth Wasm plugin)"
        )
    if name in MCP_SERVER:
        return _MCP_REASON
    if name in ("affinity-mode", "affinity-canary-behavior"):
        return "has no effect: Higress declares it but never reads it (always balanced, legacy)"
    if name == "mcp-sse-stateful-param-name":
        return "has no effect: MCP SSE stateful sessions (load-balance: mcp-sse) are not implemented"
    for pattern, reason in _IGNORED:
        if pattern.fullmatch(name):
            return reason
    return "has no effect: Higress does not read this annotation"


def report_ignored(r: AnnotationReader) -> None:
    """A problem for every key under either prefix that nothing reads, in key order."""
    for key in sorted(r.annotations):
        if key.startswith(NGINX_PREFIX):
            reason = _reason(key[len(NGINX_PREFIX) :], nginx=True)
        elif key.startswith(HIGRESS_PREFIX):
            reason = _reason(key[len(HIGRESS_PREFIX) :], nginx=False)
        else:
            continue
        if reason is not None:
            r.add(key, r.annotations[key], reason)
