"""Ingresses: each translated into host routes and TLS entries, and per host its HTTP virtual host, its
HTTPS route configuration and SNI filter chain, and the derived clusters and secrets they use. Only the
Ingresses of the served class (translate/ingress_class.py) are translated; the others are reported
ignored, and every IngressClass change decides its source's Ingresses again."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import msgspec

from xdsbus.contract.status import Verdict
from xdsbus.contract.type_urls import ROUTE
from xdsbus.fold.state import FoldState, ObjectRef
from xdsbus.model.k8s import K8sIngress, decode_object
from xdsbus.model.routes import HeaderMatch, Route, StringMatchKind, TlsFilterChainModel
from xdsbus.model.secrets import secret_name
from xdsbus.translate import envoy_listeners, envoy_routes
from xdsbus.translate.canary import apply_canaries
from xdsbus.translate.global_options.model import CurrentOptions
from xdsbus.translate.handlers.index_sets import SetIndex
from xdsbus.translate.handlers.route_inputs import RouteInputs
from xdsbus.translate.handlers.touched import Touched
from xdsbus.translate.ingress_annotations import CanarySpec
from xdsbus.translate.ingress_annotations.re2 import ENVOY_MAX_PROGRAM_SIZE, re2_problem, re2_program_size
from xdsbus.translate.ingress_class import HIGRESS_CONTROLLER, IngressClassFacts, class_facts, ignored_reason
from xdsbus.translate.ingress_rules import (
    WILDCARD_HOST,
    HostRoute,
    HostTls,
    IngressError,
    IngressTranslation,
    RpcLookup,
    http_listener_route,
    translate_ingress,
)
from xdsbus.translate.rejections import rejection_reason
from xdsbus.translate.route_order import describe_match, order_routes
from xdsbus.translate.route_tables import error_page_headers
from xdsbus.translate.virtual_hosts import Problems, origin_ref, route_needs, serve_virtual_host

INGRESS = "Ingress"
INGRESS_CLASS = "IngressClass"


@dataclass
class IngressIndex:
    """Ingress translations, the hosts they feed, and per host what was built for it."""

    translations: dict[ObjectRef, IngressTranslation] = field(default_factory=dict)
    # The Ingresses with routes for a host, with TLS for a host, and using a service hostname.
    vhost_members: SetIndex[str, ObjectRef] = field(default_factory=SetIndex)
    tls_members: SetIndex[str, ObjectRef] = field(default_factory=SetIndex)
    dependents: SetIndex[str, ObjectRef] = field(default_factory=SetIndex)
    # What each rejected Ingress's last translation read (`dependents` inverted); a translated one's is
    # its translation's `services`, not repeated here (a dict entry per Ingress, ~6 bytes per endpoint).
    read_services: dict[ObjectRef, list[str]] = field(default_factory=dict)
    # Per host, its HTTP virtual host serialized and framed as a RouteConfiguration field, and its routes
    # (to merge a host the Gateway API also serves on the HTTP port).
    vhost_bytes: dict[str, bytes] = field(default_factory=dict)
    vhost_routes: dict[str, list[Route]] = field(default_factory=dict)
    # Problems found while assembling a host (lost conflicts, orphan canaries, missing TLS secrets),
    # reported on the object concerned.
    conflicts: dict[str, Problems] = field(default_factory=dict)
    # The SNI filter chain of each host served over TLS.
    tls_hosts: dict[str, TlsFilterChainModel] = field(default_factory=dict)
    # The `*` host's HTTP routes: wildcard hosts end with them (see _one_label).
    catch_all_routes: list[Route] = field(default_factory=list)


class IngressHandler:
    """Folds Ingresses; rebuilds the hosts they contribute to."""

    # Classes first: a full build knows them all before it decides an Ingress.
    kinds = (INGRESS_CLASS, INGRESS)

    def __init__(self, inputs: RouteInputs, options: CurrentOptions | None = None) -> None:
        self._in = inputs
        self.index = IngressIndex()
        # The global options (higress-config): the upstream ones reach the derived clusters.
        self._options = options or CurrentOptions()
        # Per source, its IngressClass objects by name: an Ingress is decided by its own source's classes.
        self._classes: dict[str, dict[str, IngressClassFacts]] = {}
        # How Http2Rpc objects are looked up (set by the translator; None: the data plane has no
        # transcoder, so Ingresses naming one answer 503).
        self.rpc: RpcLookup | None = None

    def fold(self, state: FoldState, ref: ObjectRef) -> Touched:
        """An Ingress changed: it is translated by `translate`, once the update's services are rebuilt
        (its routes read their models). An IngressClass changed: every Ingress of its source is decided
        again."""
        if ref.kind == INGRESS_CLASS:
            self._fold_class(state, ref)
            return Touched(
                ingresses=frozenset(r for r, _ in state.of_kind(INGRESS) if r.source == ref.source)
            )
        return Touched(ingresses=frozenset((ref,)))

    def _fold_class(self, state: FoldState, ref: ObjectRef) -> None:
        classes = self._classes.setdefault(ref.source, {})
        stored = state.get(ref)
        if stored is None:
            classes.pop(ref.key, None)
            if not classes:
                del self._classes[ref.source]
            self._in.status.clear(ref)
            return
        facts = class_facts(ref.key, stored.value())
        classes[ref.key] = facts
        wanted = self._in.settings.ingress_class
        if not wanted or facts.name == wanted or facts.controller == HIGRESS_CONTROLLER:
            self._in.status.set(ref, Verdict.ACCEPTED)
        else:
            self._in.status.set(
                ref,
                Verdict.IGNORED,
                f"IngressClass {ref.key}: not {wanted!r} and its controller {facts.controller!r} is not "
                f"{HIGRESS_CONTROLLER}; its Ingresses are not served",
            )

    # -- what other changes touch ---------------------------------------------------------------

    def dependents(self, host: str) -> set[ObjectRef]:
        """The Ingresses whose translation reads the service `host`."""
        return self.index.dependents.members(host)

    def hosts_using(self, secrets: Iterable[str]) -> set[str]:
        """The hosts whose TLS uses or waits for one of these SDS names."""
        return self._in.secrets.users(secrets) & self.index.tls_members.keys()

    def served_hosts(self) -> set[str]:
        """Every host served over HTTP or HTTPS."""
        return self.index.vhost_members.keys() | self.index.tls_members.keys()

    def ingress_keys(self) -> set[str]:
        """The `namespace/name` of every translated Ingress."""
        return {ref.key for ref in self.index.translations}

    # -- what the shared listeners read -------------------------------------------------------------

    def http_vhosts(self) -> Mapping[str, bytes]:
        """Per host, its framed HTTP virtual host."""
        return self.index.vhost_bytes

    def http_routes(self, host: str) -> list[Route]:
        """The HTTP routes a host serves."""
        return self.index.vhost_routes.get(host, [])

    def tls_chains(self) -> tuple[TlsFilterChainModel, ...]:
        """The SNI filter chains of the hosts served over TLS, by host."""
        tls_hosts = self.index.tls_hosts
        return tuple(tls_hosts[h] for h in sorted(tls_hosts))

    # -- translation ----------------------------------------------------------------------------

    def translate(self, state: FoldState, refs: Iterable[ObjectRef]) -> set[str]:
        """Translate these Ingresses again; returns the hosts to rebuild."""
        vhosts: set[str] = set()
        for ref in sorted(refs):
            vhosts |= self._translate(state, ref)
        return vhosts

    def _depend(self, ref: ObjectRef, services: list[str]) -> None:
        """Record that `ref`'s translation read these service hostnames."""
        for host in services:
            self.index.dependents.add(host, ref)

    def _translate(self, state: FoldState, ref: ObjectRef) -> set[str]:
        index = self.index
        vhosts: set[str] = set()
        old = index.translations.pop(ref, None)
        if old is not None:
            for hr in old.routes:
                vhosts.add(hr.host)
                index.vhost_members.discard(hr.host, ref)
            for tls in old.all_tls:
                vhosts.add(tls.host)
                index.tls_members.discard(tls.host, ref)
        for host in old.services if old is not None else index.read_services.pop(ref, ()):
            index.dependents.discard(host, ref)
        stored = state.get(ref)
        if stored is None:
            self._in.status.clear(ref)
            return vhosts
        try:
            ingress = decode_object(stored.body, K8sIngress)
            ignored = ignored_reason(
                ingress, self._classes.get(ref.source, {}), self._in.settings.ingress_class
            )
            if ignored is not None:
                # Another controller's Ingress: not an error, and nothing of it is served.
                self._in.status.set(ref, Verdict.IGNORED, f"Ingress {ref.key}: ignored: {ignored}")
                return vhosts
            translation = translate_ingress(ingress, ref.source, ref.key, self._in.services.model, self.rpc)
        except Exception as exc:
            if isinstance(exc, IngressError):
                # The reason may say a service is missing: its arrival must translate this one again.
                index.read_services[ref] = exc.services
                self._depend(ref, exc.services)
            self._in.status.set(ref, Verdict.REJECTED, f"Ingress {ref.key}: {rejection_reason(exc)}")
            return vhosts
        index.translations[ref] = translation
        for hr in translation.routes:
            vhosts.add(hr.host)
            index.vhost_members.add(hr.host, ref)
        for tls in translation.all_tls:
            vhosts.add(tls.host)
            index.tls_members.add(tls.host, ref)
        self._depend(ref, translation.services)
        self._report(ref)
        return vhosts

    def _report(self, ref: ObjectRef) -> None:
        translation = self.index.translations.get(ref)
        if translation is None:
            return
        hosts = sorted({hr.host for hr in translation.routes} | {t.host for t in translation.all_tls})
        lost = [msg for host in hosts for msg in self.index.conflicts.get(host, {}).get(ref, [])]
        self._in.status.set(ref, Verdict.ACCEPTED, warnings=translation.warnings + lost)

    # -- hosts ----------------------------------------------------------------------------------

    def regenerate(self, vhosts: set[str]) -> None:
        """Rebuild these hosts."""
        if WILDCARD_HOST in vhosts:
            # Wildcard hosts end with the `*` rules (see _one_label); sorted, `*` is rebuilt first.
            vhosts = vhosts | {host for host in self.index.vhost_members if _is_wildcard(host)}
        if any(_is_wildcard(host) for host in vhosts):
            # Exact hosts end with their wildcard host's routes (_wildcard_fallback); sorted, `*.x` comes
            # before the names under it.
            vhosts = vhosts | {host for host in self.index.vhost_members if _parent_wildcard(host) in vhosts}
        for host in sorted(vhosts):
            self._regenerate_host(host)

    def regenerate_error_pages(self) -> None:
        """Rebuild the hosts whose HTTP routes have error pages: their re-issued requests carry the route
        table key exactly when the HTTP port's table is split (translate/route_table_choice.py)."""
        self.regenerate(
            {
                host
                for host, routes in self.index.vhost_routes.items()
                if any(route.error_pages is not None for route in routes)
            }
        )

    def _regenerate_host(self, host: str) -> None:
        """Rebuild one host: its HTTP virtual host, its HTTPS route configuration, and the derived
        clusters and secrets they use."""
        index = self.index
        ports = self._in.settings
        previous = index.conflicts.pop(host, {})
        problems: Problems = {}
        host_routes = [
            hr
            for ref in sorted(index.vhost_members.members(host))
            for hr in index.translations[ref].routes
            if hr.host == host
        ]
        tls, tls_secrets = self._host_tls(host, problems) if host != WILDCARD_HOST else (None, [])
        listeners: list[list[Route]] = []
        if host_routes:
            http_routes = self._ordered_routes(host, host_routes, True, tls is not None, problems)
            if _is_wildcard(host):
                # Names deeper than one label are not this host's: they fall through to the `*` rules.
                http_routes = _one_label(http_routes, host, host_routes, problems) + index.catch_all_routes
            else:
                http_routes = http_routes + self._wildcard_fallback(host, http_listener=True)
            vhost, http_routes = serve_virtual_host(
                f"{host}:{ports.http_port}",
                host,
                http_routes,
                problems,
                plugins=self._in.plugins,
                error_page_headers=error_page_headers(self._in.route_tables.value.tables),
            )
            index.vhost_bytes[host] = envoy_routes.frame_virtual_host(vhost)
            index.vhost_routes[host] = http_routes
            listeners.append(http_routes)
        else:
            index.vhost_bytes.pop(host, None)
            index.vhost_routes.pop(host, None)
            index.vhost_members.pop(host)
        if host == WILDCARD_HOST:
            index.catch_all_routes = listeners[0] if listeners else []
        https_name = envoy_listeners.https_route_config_name(ports.https_port, host)
        if tls is not None:
            https_routes = self._ordered_routes(host, host_routes, False, True, {})
            if _is_wildcard(host):
                https_routes = _one_label(https_routes, host, host_routes, {})
            else:
                https_routes = https_routes + self._wildcard_fallback(host, http_listener=False)
            vhost, https_routes = serve_virtual_host(
                f"{host}:{ports.https_port}", host, https_routes, {}, plugins=self._in.plugins
            )
            self._in.table.put(ROUTE, https_name, envoy_routes.assemble_route_config(https_name, [vhost]))
            index.tls_hosts[host] = TlsFilterChainModel(
                server_names=(host,), tls=tls.tls, route_config=https_name
            )
            listeners.append(https_routes)
        else:
            self._in.table.remove(ROUTE, https_name)
            index.tls_hosts.pop(host, None)
        # A host served over TLS references its secrets (published); a host still missing one only
        # waits for them (not published), so their arrival rebuilds it.
        clusters, secrets = route_needs(
            (route for routes in listeners for route in routes),
            self._in.services.model,
            self._options.value.upstream,
        )
        self._in.derived.set_owned(host, clusters)
        if tls is not None:
            self._in.secrets.set_used(host, secrets | set(tls_secrets), [])
        else:
            self._in.secrets.set_used(host, secrets, tls_secrets)
        if problems:
            index.conflicts[host] = problems
        for ref in sorted(previous.keys() | problems.keys()):
            if previous.get(ref) != problems.get(ref):
                self._report(ref)

    def _host_tls(self, host: str, problems: Problems) -> tuple[HostTls | None, list[str]]:
        """The TLS settings a host is served with (the oldest Ingress's, when its secrets exist), and
        the SDS names they need: watched even while missing, so their arrival rebuilds the host."""
        entries = sorted(
            (
                tls
                for ref in self.index.tls_members.members(host)
                for tls in self.index.translations[ref].all_tls
                if tls.host == host
            ),
            key=lambda tls: tls.origin,
        )
        candidates = [c for c in (self._with_fallback(tls) for tls in entries) if c is not None]
        if not candidates:
            return None, [tls.tls.cert_secret for tls in entries if tls.tls.cert_secret]
        chosen = candidates[0]
        # The entry's own Secret stays watched while higress-https's stands in for it.
        replaced = next(
            (tls.tls.cert_secret for tls in entries if tls.origin == chosen.origin and tls.tls.cert_secret),
            "",
        )
        for other in candidates[1:]:
            if other.origin != chosen.origin:
                problems.setdefault(origin_ref(other.origin), []).append(
                    f"host {host}: TLS is already configured by {chosen.origin.kind} {chosen.origin.key} "
                    "(older wins)"
                )
        needed = sorted(
            {name for name in (chosen.tls.cert_secret, chosen.tls.client_ca_secret, replaced) if name}
        )
        missing = [
            name
            for name, want_certificate in (
                (chosen.tls.cert_secret, True),
                (chosen.tls.client_ca_secret, False),
            )
            if name and not self._in.secrets.holds(name, want_certificate)
        ]
        if missing:
            problems.setdefault(origin_ref(chosen.origin), []).append(
                f"host {host}: TLS secret {', '.join(missing)} not found or not usable; "
                "the host is served over plain HTTP only"
            )
            return None, needed
        return chosen, needed

    def _with_fallback(self, tls: HostTls) -> HostTls | None:
        """A TLS entry with the certificate it is served with: its own Secret; higress-https's for the
        host's domain when it names none, or (fallbackForInvalidSecret) when its own does not exist, as
        Higress does (docs/global-options.md); None when it has no certificate at all."""
        https = self._options.https
        own = tls.tls.cert_secret
        if own and (not https.fallback_for_invalid_secret or self._in.secrets.holds(own, True)):
            return tls
        match = https.secret_for(tls.host)
        if match is None:
            return tls if own else None
        fallback = msgspec.structs.replace(tls.tls, cert_secret=secret_name(*match))
        return msgspec.structs.replace(tls, tls=fallback)

    def _wildcard_fallback(self, host: str, *, http_listener: bool) -> list[Route]:
        """The routes an exact host falls back to when none of its own match: its wildcard host's, as
        Higress serves them (e2e test httproute-exact-domain-fallback: `www.foo.com/foo` reaches the
        `*.foo.com` Ingress when `www.foo.com` only routes `/bar`). On plain HTTP they are exactly what
        the wildcard host serves there, ending with the `*` rules."""
        parent = _parent_wildcard(host)
        if not parent:
            return []
        if http_listener:
            return list(self.index.vhost_routes.get(parent, []))
        members = [
            hr
            for ref in sorted(self.index.vhost_members.members(parent))
            for hr in self.index.translations[ref].routes
            if hr.host == parent
        ]
        if not members:
            return []
        return _one_label(self._ordered_routes(parent, members, False, True, {}), parent, members, {})

    def _ordered_routes(
        self, host: str, host_routes: list[HostRoute], http_listener: bool, has_tls: bool, problems: Problems
    ) -> list[Route]:
        """One listener's routes of a host: ordered, deduplicated, canaries merged."""
        normal: list[Route] = []
        defaults: list[Route] = []
        canaries: list[tuple[Route, CanarySpec]] = []
        for hr in host_routes:
            route = http_listener_route(hr, has_tls) if http_listener else hr.route
            if hr.canary is not None:
                canaries.append((route, hr.canary))
            elif hr.default_backend:
                defaults.append(route)
            else:
                normal.append(route)
        ordered, conflicts = order_routes(normal, default_backends=defaults)
        merged = apply_canaries(ordered, canaries)
        for c in conflicts:
            problems.setdefault(origin_ref(c.loser), []).append(
                f"host {host}: {c.match} is already served by {c.winner.kind} {c.winner.key} (older wins)"
            )
        for route, _ in merged.orphans:
            problems.setdefault(origin_ref(route.origin), []).append(
                f"host {host}: canary has no matching non-canary route for {describe_match(route)}"
            )
        return merged.routes


def _is_wildcard(host: str) -> bool:
    return host.startswith("*.")


def _parent_wildcard(host: str) -> str:
    """The wildcard host one label above an exact host (`a.example.com` -> `*.example.com`), or ""."""
    if host == WILDCARD_HOST or _is_wildcard(host) or "." not in host:
        return ""
    return "*." + host.split(".", 1)[1]


def _one_label(routes: list[Route], host: str, members: list[HostRoute], problems: Problems) -> list[Route]:
    """`routes` restricted to names exactly one label under the wildcard `host`: Envoy matches the domain
    `*.example.com` as a suffix, Kubernetes means one label (`a.example.com`, not `a.b.example.com`).

    The `:authority` regex grows with the host; one over Envoy's RE2 program limit would make Envoy
    refuse the route configuration every host shares (docs/design.md §6). Of two equivalent forms (the
    suffix spelled out, or the number of labels, the virtual host's domain matching the suffix) the
    smaller is used; when both are over the limit the host is served without the restriction, reported
    on each Ingress that serves it."""
    authority = _one_label_authority(host)
    if authority is None:
        for ref in sorted({origin_ref(hr.route.origin) for hr in members}):
            problems.setdefault(ref, []).append(
                f"host {host}: too long to restrict to one label under Envoy's regex limit "
                f"(re2.max_program_size {ENVOY_MAX_PROGRAM_SIZE}); deeper names match it too"
            )
        return routes
    return [msgspec.structs.replace(route, headers=(authority, *route.headers)) for route in routes]


def _one_label_authority(host: str) -> HeaderMatch | None:
    """The `:authority` match of names one label under `host` that Envoy accepts, or None."""
    suffix = host[1:]
    candidates = (
        f"(?i)[^.]+{re.escape(suffix)}(:[0-9]+)?",
        f"[^.]+(\\.[^.]+){{{suffix.count('.')}}}(:[0-9]+)?",
    )
    accepted = [(re2_program_size(p), p) for p in candidates if re2_problem(p) is None]
    if not accepted:
        return None
    return HeaderMatch(name=":authority", kind=StringMatchKind.REGEX, value=min(accepted)[1])
