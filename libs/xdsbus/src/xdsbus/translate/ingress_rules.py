"""An Ingress (rules, paths, backends, default backend, TLS and Higress annotations) into the route model.

Higress semantics (docs/higress.md §0.1 and §1):
* an empty host is `*`; a wildcard host is `*.` plus a domain; hosts are lowercased;
* pathType Exact is an exact match; Prefix and ImplementationSpecific are Kubernetes prefixes (the
  trailing `/` trimmed; `/foo` matches `/foo` and `/foo/...`); regex mode (use-regex, full-path-regex, or
  rewrite-target with groups or a regex-looking path) makes every path a regex, `<path>.*` or `<path>$`;
* spec.defaultBackend serves host `*` and every host of the Ingress without a catch-all, ordered last;
* spec.tls gives a host a certificate only when the host is exactly a rule host; a second Secret for
  the same host is reported and ignored;
* annotations apply to every route of the Ingress; values that cannot be used are warnings and the rest
  still applies.

A canary Ingress (annotation canary: "true") yields routes marked with their CanarySpec: they are merged
into the normal routes of each virtual host by translate.canary.apply_canaries, never served as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from xdsbus.model.k8s import IngressBackend, IngressRule, K8sIngress
from xdsbus.model.routes import (
    DEFAULT_POLICY,
    Destination,
    DownstreamTls,
    DubboTranscoding,
    ErrorPages,
    Mirror,
    PathKind,
    PathMatch,
    Redirect,
    Route,
    RouteOrigin,
    TlsVersion,
    UpstreamPolicy,
    UpstreamProtocol,
)
from xdsbus.model.secrets import ca_secret_name, secret_name
from xdsbus.model.services import ServiceModel, k8s_hostname
from xdsbus.translate.canary import normalize_weights
from xdsbus.translate.dataplane import UNSUPPORTED_HTTP2RPC
from xdsbus.translate.ingress_annotations import (
    CanarySpec,
    HttpsRedirect,
    ParsedAnnotations,
    parse_annotations,
)
from xdsbus.translate.ingress_annotations.downstream_tls import DownstreamTlsSpec
from xdsbus.translate.ingress_annotations.re2 import re2_problem
from xdsbus.translate.ingress_annotations.reader import ServiceRef
from xdsbus.translate.ingress_annotations.redirect import APP_ROOT_CODE, HTTPS_REDIRECT
from xdsbus.translate.ingress_annotations.rewrite import RegexMode
from xdsbus.translate.route_order import describe_match, is_catch_all, match_key

# Look up a Service by hostname; None when the Service is unknown.
ServiceLookup = Callable[[str], ServiceModel | None]
# Look up an Http2Rpc by name: its transcoding, or why the routes naming it cannot be served.
RpcLookup = Callable[[str], DubboTranscoding | str]

WILDCARD_HOST = "*"
ROOT = PathMatch(kind=PathKind.PREFIX, value="/")
# The backend `resource` Higress reads destinations for (from higress.io/destination).
MCP_BRIDGE = ("networking.higress.io", "McpBridge", "default")


class IngressError(ValueError):
    """An Ingress that cannot be translated at all. `services` are the service hostnames its translation
    read: the reason may name one as missing, so the Ingress is translated again when one changes."""

    def __init__(self, reason: str, services: list[str]) -> None:
        super().__init__(reason)
        self.services = services


class HostRoute(msgspec.Struct, frozen=True, gc=False):
    """A route of an Ingress and the virtual host it belongs to.

    `canary`: the route comes from a canary Ingress and must be merged (apply_canaries), not served.
    `default_backend`: made from spec.defaultBackend; ordered last (order_routes(default_backends=...)).
    `https_redirect`: on the plain-HTTP listener the route answers with a redirect to HTTPS instead
    (see http_listener_route); on HTTPS listeners it serves as it is.
    """

    host: str
    route: Route
    canary: CanarySpec | None = None
    default_backend: bool = False
    https_redirect: HttpsRedirect = HttpsRedirect.NONE


class HostTls(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """A host the Ingress serves over TLS, with its certificate and client settings."""

    host: str
    tls: DownstreamTls
    origin: RouteOrigin


# The empty list every translation without warnings or TLS shares instead of three of its own (56 bytes
# each, ~34 per endpoint at 100k, bench builder_memory): translations are frozen and their lists never
# changed once made.
_NONE: list[Any] = []


class IngressTranslation(msgspec.Struct, frozen=True, gc=False):
    """What an Ingress translates to. Untracked by the cyclic collector (gc=False), as HostRoute and
    HostTls: frozen, and its lists, made before it, hold frozen structs and strings, never itself."""

    routes: list[HostRoute]
    # Hostnames of the Services this Ingress points at: a change to one of them re-translates it.
    services: list[str]
    warnings: list[str]
    tls: list[HostTls] = []
    # Rule hosts of an Ingress with TLS entries that give them no Secret (`tls.cert_secret` empty): Higress
    # serves them with the higress-https ConfigMap's certificate for their domain, if it has one
    # (docs/global-options.md).
    fallback_tls: list[HostTls] = []

    @property
    def all_tls(self) -> list[HostTls]:
        """The TLS hosts, with their own Secret or waiting for higress-https's."""
        return self.tls + self.fallback_tls


def http_listener_route(host_route: HostRoute, host_has_tls: bool) -> Route:
    """The route as the plain-HTTP listener serves it: a 308 to HTTPS under force-ssl-redirect, or under
    ssl-redirect when the host has a certificate; otherwise the route itself."""
    redirect = host_route.https_redirect
    if redirect is HttpsRedirect.ALWAYS or (redirect is HttpsRedirect.IF_TLS and host_has_tls):
        return msgspec.structs.replace(host_route.route, redirect=HTTPS_REDIRECT)
    return host_route.route


def _host(host: str) -> str:
    if not host:
        return WILDCARD_HOST
    if host.startswith("*.") and "*" not in host[2:] and len(host) > 2:
        return host.lower()
    if "*" in host:
        raise ValueError(f"host {host!r}: a wildcard must be the whole first label")
    return host.lower()


def _path_match(
    path: str, path_type: str, regex: Callable[[str], RegexMode], *, ignore_case: bool = False
) -> PathMatch:
    path = path or "/"
    if not path.startswith("/"):
        raise ValueError(f"path {path!r} must start with '/'")
    if path_type not in ("Exact", "Prefix", "ImplementationSpecific", ""):
        raise ValueError(f"pathType {path_type!r} is not Exact, Prefix or ImplementationSpecific")
    mode = regex(path)
    if mode is not RegexMode.NONE:
        value = path + (".*" if mode is RegexMode.PREFIX else "$")
        # Checked as Envoy will compile it: ignore-path-case prefixes `(?i)` (envoy_routes.py), which can
        # more than double the RE2 program size.
        reason = re2_problem(("(?i)" if ignore_case else "") + value)
        if reason:
            raise ValueError(f"path {path!r} as a regex {value!r} {reason}")
        return PathMatch(kind=PathKind.REGEX, value=value)
    if path_type == "Exact":
        return PathMatch(kind=PathKind.EXACT, value=path)
    # Higress reads ImplementationSpecific as a prefix unless regex mode is on.
    return PathMatch(kind=PathKind.PREFIX, value=path.rstrip("/") or "/")


class _IngressBuilder:
    """The state of translating one Ingress."""

    def __init__(
        self, ingress: K8sIngress, source: str, key: str, lookup: ServiceLookup, rpc: RpcLookup | None
    ) -> None:
        meta = ingress.metadata
        self.ingress = ingress
        self.namespace = meta.namespace
        self.lookup = lookup
        self.origin = RouteOrigin(created=meta.creation_timestamp, kind="Ingress", key=key, source=source)
        self.parsed: ParsedAnnotations = parse_annotations(meta.annotations, namespace=meta.namespace)
        self.warnings: list[str] = list(self.parsed.problems)
        self.services: list[str] = []
        p = self.parsed
        lb = p.load_balance
        self.policy = UpstreamPolicy(
            lb=lb.lb if lb else DEFAULT_POLICY.lb,
            protocol=p.upstream.protocol if p.upstream else DEFAULT_POLICY.protocol,
            tls=p.upstream.tls if p.upstream else None,
        )
        dubbo, self.rpc_refusal = self._rpc(rpc)
        if dubbo is not None:
            self.policy = msgspec.structs.replace(self.policy, protocol=UpstreamProtocol.DUBBO)
        self.fallback = self._resolve(p.fallback.service) if p.fallback else None
        error_pages = None
        if p.fallback and p.fallback.error_codes and self.fallback:
            error_pages = ErrorPages(codes=p.fallback.error_codes, destination=self.fallback)
        # What every route of the Ingress does, whatever its match.
        self.template = Route(
            path=ROOT,
            direct_status=503,
            redirect=p.redirect.redirect if p.redirect else None,
            timeout_ms=p.timeout_ms,
            retry=p.retry,
            cors=p.cors,
            request_headers=p.header_control.request,
            response_headers=p.header_control.response,
            mirrors=self._mirrors(),
            hash_policies=lb.hash_policies if lb else (),
            allow_source_ranges=p.allow_source_ranges,
            error_pages=error_pages,
            rate_limit=p.rate_limit,
            dubbo=dubbo,
            direct_body=self.rpc_refusal,
            origin=self.origin,
        )
        self.https_redirect = p.redirect.https if p.redirect else HttpsRedirect.NONE

    # -- references ------------------------------------------------------------------------

    def _rpc(self, rpc: RpcLookup | None) -> tuple[DubboTranscoding | None, str]:
        """The Dubbo transcoding of the Http2Rpc the Ingress names, or why its routes answer 503
        instead: an RPC service must never be reached as plain HTTP."""
        target = self.parsed.rpc_destination
        if target is None:
            return None, ""
        self.services.append(http2rpc_dependency(target.name))
        found = UNSUPPORTED_HTTP2RPC if rpc is None else rpc(target.name)
        if isinstance(found, str):
            reason = f"Http2Rpc {target.name}: {found}"
            self.warnings.append(target.ref.problem(f"names {reason}; the Ingress's routes answer 503"))
            return None, reason
        return found, ""

    def _resolve(self, ref: ServiceRef) -> Destination | None:
        """A Service named by an annotation: it must exist; port 0 means its first port."""
        hostname = k8s_hostname(ref.name, ref.namespace)
        self.services.append(hostname)
        service = self.lookup(hostname)
        if service is None:
            self.warnings.append(
                ref.ref.problem(f"names service {ref.namespace}/{ref.name}, which is not found")
            )
            return None
        if ref.port:
            return Destination(hostname=hostname, port=ref.port)
        if not service.ports:
            self.warnings.append(
                ref.ref.problem(f"names service {ref.namespace}/{ref.name}, which has no ports")
            )
            return None
        return Destination(hostname=hostname, port=service.ports[0].number)

    def _mirrors(self) -> tuple[Mirror, ...]:
        spec = self.parsed.mirror
        if spec is None:
            return ()
        if spec.service is None:
            target: Destination | None = Destination(hostname=spec.fqdn, port=spec.fqdn_port)
        else:
            target = self._resolve(spec.service)
        return () if target is None else (Mirror(destination=target, millionths=spec.millionths),)

    # -- backends ----------------------------------------------------------------------------

    def _decorate(self, dest: Destination) -> Destination:
        if self.policy != DEFAULT_POLICY:
            dest = msgspec.structs.replace(dest, policy=self.policy)
        if self.fallback is not None:
            dest = msgspec.structs.replace(dest, fallback=self.fallback)
        return dest

    def destinations(self, backend: IngressBackend) -> tuple[tuple[Destination, ...], str]:
        """The weighted destinations of a backend, or a problem."""
        if backend.service is not None:
            dest, problem = self._service_destination(backend)
            return ((self._decorate(dest),) if dest else ()), problem
        spec = self.parsed.destination
        if spec is not None:
            weights = normalize_weights(
                [line.weight for line in spec.lines], sum(line.weight for line in spec.lines)
            )
            dests = []
            for line, weight in zip(spec.lines, weights, strict=True):
                self.services.append(line.host)
                dests.append(self._decorate(Destination(hostname=line.host, port=line.port, weight=weight)))
            return tuple(dests), ""
        resource = backend.resource
        if resource is not None:
            ident = (resource.get("apiGroup"), resource.get("kind"), resource.get("name"))
            if ident == MCP_BRIDGE:
                return (), "backend is the McpBridge but the higress.io/destination annotation is missing"
            return (), f"backend resource {resource.get('kind')}/{resource.get('name')} is not supported"
        return (), "backend has neither a service nor a resource"

    def _service_destination(self, backend: IngressBackend) -> tuple[Destination | None, str]:
        svc = backend.service
        assert svc is not None
        hostname = k8s_hostname(svc.name, self.namespace)
        self.services.append(hostname)
        port = svc.port
        if port.number:
            return Destination(hostname=hostname, port=port.number), ""
        service = self.lookup(hostname)
        if service is None:
            return None, f"service {self.namespace}/{svc.name} not found"
        for candidate in service.ports:
            if candidate.name == port.name:
                return Destination(hostname=hostname, port=candidate.number), ""
        return None, f"service {self.namespace}/{svc.name} has no port named {port.name!r}"

    # -- routes ------------------------------------------------------------------------------

    def route(
        self, match: PathMatch, destinations: tuple[Destination, ...], *, default_backend: bool = False
    ) -> Route:
        """A route with every annotation applied. The default backend gets no match annotations
        (methods, headers, query, case) and no rewrite-target, as in Higress where it has no match."""
        m = self.parsed.match
        rewrite = self.parsed.rewrite
        conditions = not default_backend
        return msgspec.structs.replace(
            self.template,
            path=match,
            headers=m.headers if conditions else (),
            query=m.query if conditions else (),
            methods=m.methods if conditions else (),
            ignore_case=m.ignore_case if conditions else False,
            destinations=() if self.rpc_refusal else destinations,
            rewrite=rewrite.for_match(match, target=conditions) if rewrite else None,
        )

    def regex_mode(self, path: str) -> RegexMode:
        rewrite = self.parsed.rewrite
        return rewrite.regex_mode(path) if rewrite else RegexMode.NONE

    def host_route(self, host: str, route: Route, *, default_backend: bool = False) -> HostRoute:
        return HostRoute(
            host=host,
            route=route,
            canary=self.parsed.canary,
            default_backend=default_backend,
            https_redirect=self.https_redirect,
        )


def _rule_routes(
    b: _IngressBuilder, rule_index: int, rule: IngressRule, seen: dict[tuple[str, object], str]
) -> tuple[str | None, list[HostRoute], int]:
    """(host, routes, paths attempted) of one rule; problems go to the builder's warnings."""
    try:
        host = _host(rule.host)
    except ValueError as exc:
        b.warnings.append(f"rules[{rule_index}]: {exc}")
        return None, [], len(rule.http.paths) if rule.http else 1
    out: list[HostRoute] = []
    paths = rule.http.paths if rule.http else []
    for path_index, path in enumerate(paths):
        where = f"rules[{rule_index}].http.paths[{path_index}]"
        try:
            match = _path_match(
                path.path, path.path_type, b.regex_mode, ignore_case=b.parsed.match.ignore_case
            )
        except ValueError as exc:
            b.warnings.append(f"{where}: {exc}")
            continue
        dests, problem = b.destinations(path.backend)
        if problem:
            b.warnings.append(f"{where}: {problem}")
        route = b.route(match, dests)
        key = (host, match_key(route))
        if key in seen:
            b.warnings.append(
                f"{where}: host {host}: {describe_match(route)} is already routed by {seen[key]}; ignored"
            )
            continue
        seen[key] = where
        out.append(b.host_route(host, route))
    return host, out, len(paths)


def _tls(b: _IngressBuilder, hosts: Sequence[str]) -> tuple[list[HostTls], list[HostTls]]:
    """Per rule host, its certificate from spec.tls (exact host match, first Secret wins); and, when
    spec.tls is not empty, the other rule hosts (Higress's ingressv1/controller.go gives them the
    higress-https ConfigMap's certificate for their domain)."""
    chosen: dict[str, tuple[str, int]] = {}
    for i, entry in enumerate(b.ingress.spec.tls):
        if not entry.secret_name:
            b.warnings.append(f"tls[{i}]: no secretName; its hosts are served over plain HTTP only")
            continue
        for j, raw in enumerate(entry.hosts):
            host = raw.lower()
            if host not in hosts:
                b.warnings.append(
                    f"tls[{i}].hosts[{j}]: host {raw} is not a rule host of this Ingress; ignored"
                )
                continue
            previous = chosen.get(host)
            if previous is None:
                chosen[host] = (entry.secret_name, i)
            elif previous[0] != entry.secret_name:
                b.warnings.append(
                    f"tls[{i}]: host {host} already has Secret {previous[0]} (tls[{previous[1]}]); "
                    f"Secret {entry.secret_name} is ignored for it"
                )
    spec = b.parsed.downstream_tls
    if spec is not None and spec.client_ca is not None and not chosen:
        b.warnings.append(spec.client_ca.ref.problem("has no effect: the Ingress serves no host over TLS"))
    out: list[HostTls] = []
    fallback: list[HostTls] = []
    ns = b.namespace
    for host in hosts:
        if host not in chosen:
            if b.ingress.spec.tls and host != WILDCARD_HOST:
                fallback.append(HostTls(host=host, tls=_downstream(spec, ""), origin=b.origin))
            continue
        cert = chosen[host][0]
        client_ca = ""
        if spec is not None and spec.client_ca is not None:
            ca = spec.client_ca
            if ca.namespace == ns and ca.name in (cert, cert + "-cacert"):
                client_ca = ca_secret_name(ns, cert)
            else:
                b.warnings.append(
                    ca.ref.problem(
                        f"must name host {host}'s certificate Secret {ns}/{cert} or {ns}/{cert}-cacert; "
                        f"host {host} does not ask for client certificates"
                    )
                )
        tls = msgspec.structs.replace(_downstream(spec, secret_name(ns, cert)), client_ca_secret=client_ca)
        out.append(HostTls(host=host, tls=tls, origin=b.origin))
    return out, fallback


def _downstream(spec: DownstreamTlsSpec | None, cert_secret: str) -> DownstreamTls:
    """A host's downstream TLS with the Ingress's protocol versions and ciphers."""
    return DownstreamTls(
        cert_secret=cert_secret,
        min_version=spec.min_version if spec else TlsVersion.AUTO,
        max_version=spec.max_version if spec else TlsVersion.AUTO,
        cipher_suites=spec.cipher_suites if spec else (),
    )


def http2rpc_dependency(name: str) -> str:
    """The key an Ingress naming Http2Rpc `name` depends on, among the service hostnames it reads (an
    Http2Rpc change translates it again, as a service change does)."""
    return f"http2rpc:{name}"


def translate_ingress(
    ingress: K8sIngress, source: str, key: str, lookup: ServiceLookup, rpc: RpcLookup | None = None
) -> IngressTranslation:
    """Routes and TLS hosts of one Ingress. Paths, annotations and TLS entries that cannot be translated
    become warnings and the rest still serves; IngressError when no path or backend at all could be.
    `rpc` looks up Http2Rpc objects; None means the data plane cannot transcode them."""
    b = _IngressBuilder(ingress, source, key, lookup, rpc)
    canary = b.parsed.canary is not None
    hosts: list[str] = []
    routes: list[HostRoute] = []
    attempted = 0
    seen: dict[tuple[str, object], str] = {}
    for rule_index, rule in enumerate(ingress.spec.rules):
        host, rule_routes, tried = _rule_routes(b, rule_index, rule, seen)
        attempted += tried
        routes.extend(rule_routes)
        if host is not None and host not in hosts:
            hosts.append(host)

    extra_first: list[HostRoute] = []
    extra_last: list[HostRoute] = []
    if not canary:
        app_root = b.parsed.redirect.app_root if b.parsed.redirect else ""
        if app_root:
            for host in hosts:
                route = Route(
                    path=PathMatch(kind=PathKind.EXACT, value="/"),
                    redirect=Redirect(path=app_root, code=APP_ROOT_CODE),
                    origin=b.origin,
                )
                extra_first.append(b.host_route(host, route))
        backend = ingress.spec.default_backend
        if backend is not None:
            attempted += 1
            dests, problem = b.destinations(backend)
            if problem:
                b.warnings.append(f"defaultBackend: {problem}")
            route = b.route(ROOT, dests, default_backend=True)
            served = {hr.host for hr in routes if is_catch_all(hr.route)}
            for host in [WILDCARD_HOST, *hosts]:
                if host not in served and not any(hr.host == host for hr in extra_last):
                    extra_last.append(b.host_route(host, route, default_backend=True))
    elif ingress.spec.default_backend is not None:
        b.warnings.append("defaultBackend: ignored on a canary Ingress")

    all_routes = extra_first + routes + extra_last
    tls, fallback_tls = _tls(b, hosts)
    if attempted and not routes and not extra_last:
        raise IngressError("; ".join(b.warnings) or "no route could be translated", sorted(set(b.services)))
    return IngressTranslation(
        routes=all_routes,
        services=sorted(set(b.services)),
        warnings=b.warnings or _NONE,
        tls=tls or _NONE,
        fallback_tls=fallback_tls or _NONE,
    )
